//! `marty db split-legacy` and `marty db legacy-fixture`: moving each service's tables out of
//! the shared pre-split database into the service's own database.
//!
//! The pre-split layout: the legacy database (`legacy.database`, `marty_dev`) holds every
//! service's tables, each service in a schema named after it (`csca.outbox`, `pkd.outbox`, …:
//! the services use the same table names, so one schema could not hold them all), with the
//! service's migration history beside them.
//!
//! The copy streams `COPY … TO STDOUT` from the legacy table into `COPY … FROM STDIN` of the
//! service's table, in batches in primary-key order. Each batch is one transaction of the
//! target, so an interrupted run leaves whole batches behind, and the next run resumes after
//! the greatest key the target holds (having checked that what it holds is exactly the legacy
//! rows up to that key). No progress table is needed, and none is left in the service's
//! schema. Parity is then proven per table by row count and a content checksum computed the
//! same way on both sides.

use std::time::{Duration, Instant};

use futures::StreamExt;
use marty_config::{Config, Role, Service};
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::backup::Progress;
use crate::connect::ConnectTarget;
use crate::sql::{ident, literal};
use crate::{DbError, SqlContext};

fn failed(message: impl Into<String>) -> DbError {
    DbError::Backup(message.into())
}

/// The legacy schema holding `service`'s tables.
pub fn legacy_schema(service: Service) -> &'static str {
    service.id()
}

/// Options of one split run.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    pub dry_run: bool,
    /// Rows per batch (one target transaction each).
    pub batch_rows: usize,
    /// Once every table has parity, revoke write privileges on the legacy tables.
    pub revoke_legacy_writes: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub legacy_rows: i64,
    /// Rows the service database held before this run (a resumed copy).
    pub rows_before: i64,
    pub rows_copied: i64,
    pub target_rows: i64,
    pub legacy_checksum: String,
    pub target_checksum: String,
    pub parity: bool,
    /// What happened or, in a dry run, would happen.
    pub action: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceSplit {
    pub service: Service,
    pub legacy_schema: String,
    pub database: String,
    pub tables: Vec<TableReport>,
    pub parity: bool,
    /// Grants on the legacy tables that were revoked (with `--revoke-legacy-writes`).
    pub revoked: Vec<String>,
    pub seconds: f64,
}

impl ServiceSplit {
    pub fn rows_copied(&self) -> i64 {
        self.tables.iter().map(|t| t.rows_copied).sum()
    }
}

/// A table of one side: its columns (in the target's order, generated columns left out) and
/// primary key.
#[derive(Debug, Clone)]
struct TableShape {
    name: String,
    columns: Vec<String>,
    /// Primary key columns and their types (empty: no primary key).
    key: Vec<(String, String)>,
}

impl TableShape {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The key in a byte-wise, collation-free order, so that both databases sort alike.
    fn key_order(&self, descending: bool) -> String {
        self.key
            .iter()
            .map(|(c, ty)| {
                let collate = if is_text(ty) { " COLLATE \"C\"" } else { "" };
                let dir = if descending { " DESC" } else { "" };
                format!("{}{collate}{dir}", ident(c))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `(k1, k2) > (v1, v2)` for the last key copied.
    fn after(&self, last: &[String]) -> String {
        let cols: Vec<String> = self
            .key
            .iter()
            .map(|(c, ty)| {
                let collate = if is_text(ty) { " COLLATE \"C\"" } else { "" };
                format!("{}{collate}", ident(c))
            })
            .collect();
        let values: Vec<String> = self
            .key
            .iter()
            .zip(last)
            .map(|((_, ty), v)| format!("{}::{ty}", literal(v)))
            .collect();
        format!("({}) > ({})", cols.join(", "), values.join(", "))
    }

    /// The key as text, under aliases that cannot shadow the key's columns in ORDER BY.
    fn key_text(&self) -> String {
        self.key
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{}::text AS marty_key_{i}", ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn is_text(ty: &str) -> bool {
    ty == "text" || ty.starts_with("character") || ty.starts_with("varchar")
}

/// The tables of `schema` (migration history left out), referenced tables before the tables
/// referring to them.
async fn tables_in(conn: &mut PgConnection, schema: &str) -> Result<Vec<String>, DbError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = $1 and c.relkind in ('r', 'p') and c.relname <> '_sqlx_migrations'
          order by 1",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("listing the tables of schema {schema}"))?;
    let edges: Vec<(String, String)> = sqlx::query_as(
        "select c.relname::text, r.relname::text
           from pg_constraint k
           join pg_class c on c.oid = k.conrelid
           join pg_class r on r.oid = k.confrelid
           join pg_namespace n on n.oid = c.relnamespace
          where k.contype = 'f' and n.nspname = $1 and c.oid <> r.oid",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading the foreign keys of schema {schema}"))?;
    // Kahn's algorithm, name order among equals: stable output.
    let mut ordered = Vec::with_capacity(tables.len());
    let mut left = tables;
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|t| {
                !edges
                    .iter()
                    .any(|(from, to)| from == *t && left.contains(to) && to != *t)
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            // A cycle of foreign keys: keep name order; the copy reports what fails.
            ordered.append(&mut left);
            break;
        }
        left.retain(|t| !ready.contains(t));
        ordered.extend(ready);
    }
    Ok(ordered)
}

async fn shape_of(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Option<TableShape>, DbError> {
    let rel = format!("{}.{}", ident(schema), ident(table));
    let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(&rel)
        .fetch_one(&mut *conn)
        .await
        .context(|| format!("looking for {rel}"))?;
    if !exists {
        return Ok(None);
    }
    let columns: Vec<String> = sqlx::query_scalar(
        "select attname::text from pg_attribute
          where attrelid = $1::regclass and attnum > 0 and not attisdropped and attgenerated = ''
          order by attnum",
    )
    .bind(&rel)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading the columns of {rel}"))?;
    let key: Vec<(String, String)> = sqlx::query_as(
        "select a.attname::text, format_type(a.atttypid, a.atttypmod)
           from pg_index i
           cross join lateral unnest(i.indkey) with ordinality as k(attnum, n)
           join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
          where i.indrelid = $1::regclass and i.indisprimary
          order by k.n",
    )
    .bind(&rel)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading the primary key of {rel}"))?;
    Ok(Some(TableShape {
        name: table.to_owned(),
        columns,
        key,
    }))
}

/// Row count and content checksum of `schema.table` over `columns` (the same list on both
/// sides, so column order in the two databases does not matter).
async fn table_sum(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    columns: &str,
) -> Result<(i64, String), DbError> {
    sqlx::raw_sql(crate::backup::STABLE_TEXT)
        .execute(&mut *conn)
        .await
        .context(|| "setting the checksum session".into())?;
    sqlx::query_as(&format!(
        "select count(*), coalesce(sum(('x' || left(md5(row({columns})::text), 16))::bit(64)::bigint::numeric), 0)::text
           from only {}.{} t",
        ident(schema),
        ident(table)
    ))
    .fetch_one(&mut *conn)
    .await
    .context(|| format!("checksumming {schema}.{table}"))
}

/// The legacy database, as the administrative role (it owns it).
fn legacy_target(config: &Config) -> ConnectTarget {
    ConnectTarget::admin(config.admin()).for_legacy(config.default_database())
}

/// Copies every service's tables (or `services`') out of the legacy database.
pub async fn split_legacy(
    config: &Config,
    services: &[Service],
    options: &SplitOptions,
    progress: Progress,
) -> Result<Vec<ServiceSplit>, DbError> {
    let mut reports = Vec::new();
    for &service in services {
        reports.push(split_service(config, service, options, &progress).await?);
    }
    if options.revoke_legacy_writes && !options.dry_run {
        if let Some(bad) = reports.iter().find(|r| !r.parity) {
            return Err(failed(format!(
                "{}: parity does not hold, so the legacy tables keep their write privileges",
                bad.service
            )));
        }
        let mut legacy = legacy_target(config).connect().await?;
        for report in &mut reports {
            report.revoked = revoke_writes(&mut legacy, legacy_schema(report.service)).await?;
        }
        legacy.close().await.ok();
    }
    Ok(reports)
}

async fn split_service(
    config: &Config,
    service: Service,
    options: &SplitOptions,
    progress: &Progress,
) -> Result<ServiceSplit, DbError> {
    let started = Instant::now();
    let schema = legacy_schema(service);
    let db = config.database(service);
    let mut source = legacy_target(config).connect().await?;
    let has_schema: bool =
        sqlx::query_scalar("select exists (select from pg_namespace where nspname = $1)")
            .bind(schema)
            .fetch_one(&mut source)
            .await
            .context(|| "looking for the legacy schema".into())?;
    if !has_schema {
        return Err(failed(format!(
            "{service}: the legacy database {} has no schema {schema} (the pre-split layout keeps each service's tables in a schema named after it)",
            config.default_database().database
        )));
    }
    // The owner owns the service's tables and sequences: it may fill them and set sequences.
    let mut target = ConnectTarget::role(db, Role::Owner)?.connect().await?;
    // Keys travel as SQL literals: make sure a backslash in one is a backslash on both sides.
    for conn in [&mut source, &mut target] {
        sqlx::raw_sql("SET standard_conforming_strings = on")
            .execute(&mut *conn)
            .await
            .context(|| "setting standard_conforming_strings".into())?;
    }
    check_migrations(&mut source, &mut target, service, schema).await?;
    let mut tables = Vec::new();
    for table in tables_in(&mut source, schema).await? {
        let legacy_shape = shape_of(&mut source, schema, &table)
            .await?
            .ok_or_else(|| failed(format!("{schema}.{table} disappeared")))?;
        let shape = shape_of(&mut target, "public", &table)
            .await?
            .ok_or_else(|| {
                failed(format!(
                    "{service}: table {table} of the legacy schema has no counterpart in {} (run `marty db migrate --service {service}` first)",
                    db.database
                ))
            })?;
        let missing: Vec<&String> = legacy_shape
            .columns
            .iter()
            .filter(|c| !shape.columns.contains(c))
            .chain(
                shape
                    .columns
                    .iter()
                    .filter(|c| !legacy_shape.columns.contains(c)),
            )
            .collect();
        if !missing.is_empty() {
            return Err(failed(format!(
                "{service}: table {table} differs between the legacy schema and {}: columns {missing:?} exist on one side only",
                db.database
            )));
        }
        // Both sides are ordered and compared by the same key; its values are cast to the
        // legacy column's own types (an enum or domain lives in the legacy schema there).
        let legacy_key: Vec<&String> = legacy_shape.key.iter().map(|(c, _)| c).collect();
        let key: Vec<&String> = shape.key.iter().map(|(c, _)| c).collect();
        if legacy_key != key {
            return Err(failed(format!(
                "{service}: table {table} has primary key {legacy_key:?} in the legacy schema and {key:?} in {}",
                db.database
            )));
        }
        let shape = TableShape {
            key: legacy_shape.key.clone(),
            ..shape
        };
        tables.push(
            copy_table(
                &mut source,
                &mut target,
                schema,
                &shape,
                options,
                progress,
                service,
            )
            .await?,
        );
    }
    if !options.dry_run {
        reset_sequences(&mut source, &mut target, schema).await?;
    }
    source.close().await.ok();
    target.close().await.ok();
    let parity = tables.iter().all(|t| t.parity);
    Ok(ServiceSplit {
        service,
        legacy_schema: schema.to_owned(),
        database: db.database.clone(),
        tables,
        parity,
        revoked: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The legacy schema's migrations must all be applied, unchanged, to the service database:
/// otherwise the same table names may mean different things.
async fn check_migrations(
    source: &mut PgConnection,
    target: &mut PgConnection,
    service: Service,
    schema: &str,
) -> Result<(), DbError> {
    let history = format!("{}._sqlx_migrations", ident(schema));
    let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(&history)
        .fetch_one(&mut *source)
        .await
        .context(|| "looking for the legacy migration history".into())?;
    if !exists {
        return Ok(());
    }
    let legacy: Vec<(i64, Vec<u8>)> = sqlx::query_as(&format!(
        "select version, checksum from {history} where success order by version"
    ))
    .fetch_all(&mut *source)
    .await
    .context(|| "reading the legacy migration history".into())?;
    let applied = crate::migrate::applied(target).await?;
    for (version, checksum) in legacy {
        match applied.iter().find(|a| a.version == version) {
            Some(a) if a.checksum == checksum => {}
            Some(_) => {
                return Err(failed(format!(
                    "{service}: migration {version} differs between the legacy schema and the service database"
                )));
            }
            None => {
                return Err(failed(format!(
                    "{service}: migration {version} of the legacy schema is not applied to the service database: run `marty db migrate --service {service}` first"
                )));
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn copy_table(
    source: &mut PgConnection,
    target: &mut PgConnection,
    schema: &str,
    shape: &TableShape,
    options: &SplitOptions,
    progress: &Progress,
    service: Service,
) -> Result<TableReport, DbError> {
    let table = &shape.name;
    let columns = shape.column_list();
    let legacy_rel = format!("{}.{}", ident(schema), ident(table));
    let target_rel = format!("public.{}", ident(table));
    let label = format!("{service}: {table}");
    let legacy_rows = count(source, &legacy_rel).await?;
    let rows_before = count(target, &target_rel).await?;
    let mut report = TableReport {
        table: table.clone(),
        legacy_rows,
        rows_before,
        rows_copied: 0,
        target_rows: rows_before,
        legacy_checksum: String::new(),
        target_checksum: String::new(),
        parity: false,
        action: String::new(),
    };
    // Where a previous run stopped: the greatest key the target holds, and the target must
    // hold exactly the legacy rows up to it.
    let mut last: Option<Vec<String>> = None;
    if rows_before > 0 {
        if shape.key.is_empty() {
            if rows_before != legacy_rows {
                return Err(failed(format!(
                    "{label}: the service database holds {rows_before} rows of a table without a primary key, the legacy one {legacy_rows}: empty it to copy it again"
                )));
            }
        } else {
            let key = fetch_key(target, &target_rel, shape).await?;
            let upto: i64 = sqlx::query_scalar(&format!(
                "select count(*) from {legacy_rel} where not ({})",
                shape.after(&key)
            ))
            .fetch_one(&mut *source)
            .await
            .context(|| format!("{label}: counting the legacy rows up to the resume point"))?;
            if upto != rows_before {
                return Err(failed(format!(
                    "{label}: the service database holds {rows_before} rows, but the legacy table has {upto} up to its greatest key: it was written to outside split-legacy; empty it (or restore it) before splitting"
                )));
            }
            last = Some(key);
        }
    }
    let to_copy = legacy_rows - rows_before;
    report.action = match (options.dry_run, rows_before, to_copy) {
        (_, _, 0) => "nothing to copy".into(),
        (true, 0, n) => format!("would copy {n} rows"),
        (true, b, n) => format!("would resume after {b} rows and copy {n}"),
        (false, 0, n) => format!("copied {n} rows"),
        (false, b, n) => format!("resumed after {b} rows, copied {n}"),
    };
    if !options.dry_run && to_copy > 0 {
        if shape.key.is_empty() {
            let mut tx = target.begin().await.context(|| format!("{label}: begin"))?;
            let copied = stream(
                source,
                &mut tx,
                &format!("COPY (SELECT {columns} FROM {legacy_rel}) TO STDOUT"),
                &format!("COPY {target_rel} ({columns}) FROM STDIN"),
            )
            .await
            .map_err(|e| failed(format!("{label}: {e}")))?;
            tx.commit().await.context(|| format!("{label}: commit"))?;
            report.rows_copied = copied as i64;
        } else {
            let mut reported = Instant::now();
            let began = Instant::now();
            loop {
                let filter = last
                    .as_ref()
                    .map(|k| format!("WHERE {}", shape.after(k)))
                    .unwrap_or_default();
                let mut tx = target.begin().await.context(|| format!("{label}: begin"))?;
                let copied = stream(
                    source,
                    &mut tx,
                    &format!(
                        "COPY (SELECT {columns} FROM {legacy_rel} {filter} ORDER BY {} LIMIT {}) TO STDOUT",
                        shape.key_order(false),
                        options.batch_rows
                    ),
                    &format!("COPY {target_rel} ({columns}) FROM STDIN"),
                )
                .await
                .map_err(|e| failed(format!("{label}: {e}")))?;
                if copied == 0 {
                    break;
                }
                let key = fetch_key(&mut tx, &target_rel, shape).await?;
                tx.commit().await.context(|| format!("{label}: commit"))?;
                report.rows_copied += copied as i64;
                last = Some(key);
                if reported.elapsed() >= Duration::from_secs(2) {
                    reported = Instant::now();
                    let rate = report.rows_copied as f64 / began.elapsed().as_secs_f64();
                    progress(format!(
                        "{label}: {} of {legacy_rows} rows ({rate:.0} rows/s)",
                        rows_before + report.rows_copied
                    ));
                }
                if (copied as usize) < options.batch_rows {
                    break;
                }
            }
        }
        progress(format!(
            "{label}: {} rows copied, checking parity",
            report.rows_copied
        ));
    }
    let (lr, lsum) = table_sum(source, schema, table, &columns).await?;
    let (tr, tsum) = table_sum(target, "public", table, &columns).await?;
    report.legacy_rows = lr;
    report.target_rows = tr;
    report.parity = lr == tr && lsum == tsum;
    report.legacy_checksum = lsum;
    report.target_checksum = tsum;
    Ok(report)
}

async fn count(conn: &mut PgConnection, rel: &str) -> Result<i64, DbError> {
    sqlx::query_scalar(&format!("select count(*) from only {rel}"))
        .fetch_one(&mut *conn)
        .await
        .context(|| format!("counting {rel}"))
}

async fn fetch_key(
    conn: &mut PgConnection,
    rel: &str,
    shape: &TableShape,
) -> Result<Vec<String>, DbError> {
    let row: sqlx::postgres::PgRow = sqlx::query(&format!(
        "select {} from {rel} order by {} limit 1",
        shape.key_text(),
        shape.key_order(true)
    ))
    .fetch_one(&mut *conn)
    .await
    .context(|| format!("reading the greatest key of {rel}"))?;
    use sqlx::Row;
    (0..shape.key.len())
        .map(|i| {
            row.try_get::<String, _>(i)
                .context(|| format!("reading the greatest key of {rel}"))
        })
        .collect()
}

/// Streams the rows of `copy_out` on `source` into `copy_in` on `target`; returns the rows.
async fn stream(
    source: &mut PgConnection,
    target: &mut PgConnection,
    copy_out: &str,
    copy_in: &str,
) -> Result<u64, sqlx::Error> {
    let mut sink = target.copy_in_raw(copy_in).await?;
    let mut rows = source.copy_out_raw(copy_out).await?;
    while let Some(chunk) = rows.next().await {
        match chunk {
            Ok(bytes) => sink.send(bytes).await.map(|_| ())?,
            Err(e) => {
                drop(rows);
                sink.abort(e.to_string()).await.ok();
                return Err(e);
            }
        }
    }
    sink.finish().await
}

/// After a copy, every sequence of the service's tables continues after both the copied values
/// and the legacy sequence (ids the legacy sequence handed out may live on in rows elsewhere,
/// such as dead letters that keep their outbox id).
async fn reset_sequences(
    source: &mut PgConnection,
    target: &mut PgConnection,
    schema: &str,
) -> Result<(), DbError> {
    const SERIALS: &str = "select c.relname::text, a.attname::text,
                pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname)
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
           join pg_attribute a on a.attrelid = c.oid
          where n.nspname = $1 and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
            and pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) is not null";
    let columns: Vec<(String, String, String)> = sqlx::query_as(SERIALS)
        .bind("public")
        .fetch_all(&mut *target)
        .await
        .context(|| "listing the sequences of the service's tables".into())?;
    let legacy: Vec<(String, String, String)> = sqlx::query_as(SERIALS)
        .bind(schema)
        .fetch_all(&mut *source)
        .await
        .context(|| "listing the legacy sequences".into())?;
    for (table, column, sequence) in columns {
        let mut floor: i64 = 0;
        if let Some((_, _, legacy_sequence)) =
            legacy.iter().find(|(t, c, _)| *t == table && *c == column)
        {
            let (last, called): (i64, bool) = sqlx::query_as(&format!(
                "select last_value, is_called from {legacy_sequence}"
            ))
            .fetch_one(&mut *source)
            .await
            .context(|| format!("reading {legacy_sequence}"))?;
            floor = if called { last } else { last - 1 };
        }
        sqlx::query(&format!(
            "select setval($1::regclass, greatest((select max({col}) from public.{t}), $2, 1),
                           greatest((select max({col}) from public.{t}), $2) > 0)",
            col = ident(&column),
            t = ident(&table)
        ))
        .bind(&sequence)
        .bind(floor)
        .execute(&mut *target)
        .await
        .context(|| format!("setting sequence {sequence} after the copy"))?;
    }
    Ok(())
}

/// Revokes INSERT, UPDATE, DELETE and TRUNCATE on every table and view of `schema` (table-
/// and column-level grants, grant chains included) from everyone but the owner, then checks
/// that no login role but superusers and the owner can still write; returns what was revoked.
async fn revoke_writes(conn: &mut PgConnection, schema: &str) -> Result<Vec<String>, DbError> {
    // Every grantee of a write on a relation or one of its columns; oid 0 is PUBLIC.
    let grants: Vec<(String, i64, String)> = sqlx::query_as(
        "select distinct c.relname::text, acl.grantee::bigint, acl.privilege_type
           from pg_class c
           join pg_namespace n on n.oid = c.relnamespace
           cross join lateral (
               select (aclexplode(c.relacl)).*
               union all
               select (aclexplode(a.attacl)).* from pg_attribute a
                where a.attrelid = c.oid and a.attacl is not null
           ) acl
          where n.nspname = $1 and c.relkind in ('r', 'p', 'v', 'm', 'f')
            and acl.grantee <> c.relowner
            and acl.privilege_type in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
          order by 1, 2, 3",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading the grants on schema {schema}"))?;
    let mut revoked = Vec::new();
    for (table, grantee, privilege) in grants {
        let (who, name) = if grantee == 0 {
            ("PUBLIC".to_owned(), "PUBLIC".to_owned())
        } else {
            let name: String =
                sqlx::query_scalar("select rolname::text from pg_roles where oid = $1::oid")
                    .bind(grantee)
                    .fetch_one(&mut *conn)
                    .await
                    .context(|| format!("naming role {grantee}"))?;
            (ident(&name), name)
        };
        // A table-level REVOKE takes the column-level privileges of its kind too; CASCADE
        // takes what the grantee passed on with a grant option.
        sqlx::raw_sql(&format!(
            "REVOKE {privilege} ON {}.{} FROM {who} CASCADE",
            ident(schema),
            ident(&table)
        ))
        .execute(&mut *conn)
        .await
        .context(|| format!("revoking {privilege} on {schema}.{table} from {name}"))?;
        revoked.push(format!("{schema}.{table}: {privilege} from {name}"));
    }
    // Tables created later in the schema must not regain what was taken away.
    sqlx::raw_sql(&format!(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA {} REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON TABLES FROM PUBLIC",
        ident(schema)
    ))
    .execute(&mut *conn)
    .await
    .context(|| format!("default privileges of schema {schema}"))?;
    // What is left, as the server answers for each login role (memberships included).
    let writers: Vec<(String, String)> = sqlx::query_as(
        "select r.rolname::text, c.relname::text
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
           cross join pg_roles r
          where n.nspname = $1 and c.relkind in ('r', 'p', 'v', 'm', 'f')
            and r.rolcanlogin and not r.rolsuper and r.rolname <> current_user
            and (has_table_privilege(r.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
                 or has_any_column_privilege(r.oid, c.oid, 'INSERT, UPDATE'))
          order by 1, 2",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("checking who can still write to schema {schema}"))?;
    if let Some((role, table)) = writers.first() {
        return Err(failed(format!(
            "after revoking, {role} can still write to {schema}.{table} (it owns it or is a member of a role that does): transfer the legacy tables to the legacy database's owner, or revoke that membership, and run again ({} role/table pairs in all)",
            writers.len()
        )));
    }
    Ok(revoked)
}

/// Builds the pre-split layout in the legacy database: a schema per service with the
/// service's migrations applied and `rows` rows spread over its tables (events in every
/// service's outbox; verification records and cache entries in the Passport Engine's), plus
/// `marty_legacy_app`, the shared application role of the old layout, allowed to write
/// everything. Refuses to touch schemas that already exist unless `replace`.
pub async fn legacy_fixture(
    config: &Config,
    migrators: &[(Service, &'static sqlx::migrate::Migrator)],
    rows: u64,
    replace: bool,
    progress: Progress,
) -> Result<u64, DbError> {
    if config.environment == marty_config::Environment::Production {
        return Err(failed(
            "legacy-fixture fills the legacy database with made-up rows: it refuses to run in production",
        ));
    }
    let target = legacy_target(config);
    let mut conn = target.connect().await?;
    for (service, _) in migrators {
        let schema = legacy_schema(*service);
        let exists: bool =
            sqlx::query_scalar("select exists (select from pg_namespace where nspname = $1)")
                .bind(schema)
                .fetch_one(&mut conn)
                .await
                .context(|| "looking for the legacy schemas".into())?;
        if exists && !replace {
            return Err(failed(format!(
                "the legacy database {} already has a schema {schema}: pass --replace to drop and rebuild it",
                target.database
            )));
        }
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s}",
            s = ident(schema)
        ))
        .execute(&mut conn)
        .await
        .context(|| format!("creating schema {schema}"))?;
    }
    conn.close().await.ok();
    for (service, migrator) in migrators {
        let schema = legacy_schema(*service);
        let mut conn = target
            .with_session_settings(&[("search_path", schema.to_owned())])
            .connect()
            .await?;
        migrator.run(&mut conn).await.map_err(|e| {
            failed(format!(
                "{service}: migrating the legacy schema {schema}: {e}"
            ))
        })?;
        conn.close().await.ok();
        progress(format!("{service}: schema {schema} migrated"));
    }
    let mut conn = target.connect().await?;
    sqlx::raw_sql(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'marty_legacy_app') THEN
             CREATE ROLE marty_legacy_app NOLOGIN;
           END IF;
         END $$",
    )
    .execute(&mut conn)
    .await
    .context(|| "creating the legacy application role".into())?;
    sqlx::raw_sql(&format!(
        "GRANT CONNECT ON DATABASE {} TO marty_legacy_app",
        ident(&target.database)
    ))
    .execute(&mut conn)
    .await
    .context(|| "letting the legacy application role connect".into())?;
    for (service, _) in migrators {
        let s = ident(legacy_schema(*service));
        sqlx::raw_sql(&format!(
            "GRANT USAGE ON SCHEMA {s} TO marty_legacy_app;
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO marty_legacy_app"
        ))
        .execute(&mut conn)
        .await
        .context(|| format!("granting schema {s} to the legacy application role"))?;
    }
    // Half the rows are verification history of the engine, the rest events in every outbox.
    let has_engine = migrators.iter().any(|(s, _)| *s == Service::PassportEngine);
    let outbox_share = if has_engine { rows / 2 } else { rows };
    let per_outbox = outbox_share / migrators.len() as u64;
    let mut written = 0u64;
    const CHUNK: u64 = 100_000;
    for (service, _) in migrators {
        let s = ident(legacy_schema(*service));
        let mut done = 0;
        while done < per_outbox {
            let n = CHUNK.min(per_outbox - done);
            sqlx::raw_sql(&format!(
                "INSERT INTO {s}.outbox (event_type, event_key, payload, headers, occurred_at, published_at)
                 SELECT '{service}.fixture.event', 'key-' || (i % 997),
                        jsonb_build_object('n', i, 'country', 'UT', 'serial', md5(i::text), 'note', repeat('x', 64)),
                        jsonb_build_object('traceparent', md5((i * 7)::text)),
                        now() - make_interval(secs => i), now() - make_interval(secs => i) + interval '1 second'
                   FROM generate_series({from}, {to}) i",
                from = done + 1,
                to = done + n
            ))
            .execute(&mut conn)
            .await
            .context(|| format!("filling {s}.outbox"))?;
            done += n;
            written += n;
            progress(format!("{service}: outbox {done} of {per_outbox} rows"));
        }
    }
    if has_engine {
        let engine = rows - written;
        let cache = engine / 5;
        let requests = engine - cache;
        let mut done = 0;
        while done < requests {
            let n = CHUNK.min(requests - done);
            sqlx::raw_sql(&format!(
                "INSERT INTO passport_engine.validation_requests (sod_sha256, verdict, report, requested_by, requested_at)
                 SELECT sha256(i::text::bytea), (array['VALID', 'INVALID', 'INDETERMINATE'])[1 + i % 3],
                        jsonb_build_object('checks', jsonb_build_array('sod_signature', 'dsc_chain', 'dg_hashes'), 'n', i,
                                           'dsc', md5(i::text)),
                        'fixture', now() - make_interval(secs => i)
                   FROM generate_series({from}, {to}) i",
                from = done + 1,
                to = done + n
            ))
            .execute(&mut conn)
            .await
            .context(|| "filling passport_engine.validation_requests".into())?;
            done += n;
            written += n;
            progress(format!(
                "passport_engine: validation_requests {done} of {requests} rows"
            ));
        }
        let mut done = 0;
        while done < cache {
            let n = CHUNK.min(cache - done);
            sqlx::raw_sql(&format!(
                "INSERT INTO passport_engine.validation_cache (sod_sha256, trust_store_version, verdict, report, cached_at, expires_at)
                 SELECT sha256(('cache-' || i)::bytea), 'v1', 'VALID', jsonb_build_object('n', i),
                        now(), now() + interval '1 day'
                   FROM generate_series({from}, {to}) i",
                from = done + 1,
                to = done + n
            ))
            .execute(&mut conn)
            .await
            .context(|| "filling passport_engine.validation_cache".into())?;
            done += n;
            written += n;
        }
    }
    sqlx::raw_sql("ANALYZE")
        .execute(&mut conn)
        .await
        .context(|| "analyzing the legacy database".into())?;
    conn.close().await.ok();
    Ok(written)
}
