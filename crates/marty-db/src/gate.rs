//! `marty db drift`: the drift gate. A service's live database against what its embedded
//! migrations and the role model produce:
//!
//! 1. applied migrations against the embedded ones (missing, unknown, checksum changed);
//! 2. the live schema against a reference built in a scratch database on the same server —
//!    hardened by `setup`'s code, then migrated by this binary — compared object by object:
//!    tables, columns (type, nullability, default, identity), constraints, indexes, triggers,
//!    views and routines;
//! 3. grants on every relation and the default privileges, against the same reference, and
//!    every deviation of the role model [`crate::drift`] knows.
//!
//! The live database is read as the service's `readonly` role; the reference is built as its
//! `owner` and dropped whatever happens.

use std::collections::BTreeMap;

use marty_config::{Config, Role, Service};
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

use crate::connect::{CATALOG_SEARCH_PATH, ConnectTarget};
use crate::migrate::applied;
use crate::{DbError, SqlContext};

/// One finding of the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `migrations`, `schema` or `privileges`.
    pub area: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub service: Service,
    pub database: String,
    pub findings: Vec<Finding>,
}

/// Every object the comparison covers, as `kind name` → definition. Names are qualified by
/// schema; definitions come from PostgreSQL's own deparsers, so two databases built by the
/// same statements give the same text.
const SCHEMA_ITEMS: &str = "
select 'table ' || n.nspname::text || '.' || c.relname::text,
       'kind ' || c.relkind::text || ', persistence ' || c.relpersistence::text
       || ', replica identity ' || c.relreplident::text
       || case when c.relrowsecurity then ', row level security' else '' end
       || case when c.relforcerowsecurity then ' (forced)' else '' end
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') and %OWN%
union all
select 'column ' || n.nspname || '.' || c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod)
       || case when a.attnotnull then ' not null' else '' end
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || case a.attidentity when 'a' then ' identity always' when 'd' then ' identity by default' else '' end
       || case a.attgenerated when 's' then ' generated' else '' end
       || coalesce(' collate ' || nullif(co.collname, 'default'), '')
  from pg_attribute a
  join pg_class c on c.oid = a.attrelid
  join pg_namespace n on n.oid = c.relnamespace
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
  left join pg_collation co on co.oid = a.attcollation
 where a.attnum > 0 and not a.attisdropped and c.relkind in ('r', 'p', 'v', 'm', 'f') and %OWN%
union all
select 'constraint ' || n.nspname || '.' || c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
  from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
 where %OWN%
union all
select 'index ' || n.nspname || '.' || i.relname, pg_get_indexdef(i.oid)
  from pg_index x join pg_class i on i.oid = x.indexrelid join pg_namespace n on n.oid = i.relnamespace
 where %OWN%
union all
select 'trigger ' || n.nspname || '.' || c.relname || '.' || t.tgname,
       pg_get_triggerdef(t.oid) || case t.tgenabled when 'D' then ' (disabled)' when 'R' then ' (replica only)' when 'A' then ' (always)' else '' end
  from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
 where not t.tgisinternal and %OWN%
union all
select 'view ' || n.nspname || '.' || c.relname, md5(pg_get_viewdef(c.oid))
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('v', 'm') and %OWN%
union all
select 'routine ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       'returns ' || pg_get_function_result(p.oid) || ', body ' || md5(coalesce(p.prosrc, ''))
       || case when p.prosecdef then ', security definer' else '' end
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where %OWN%
union all
select 'rule ' || n.nspname || '.' || c.relname || '.' || r.rulename,
       pg_get_ruledef(r.oid) || case r.ev_enabled when 'D' then ' (disabled)' else '' end
  from pg_rewrite r join pg_class c on c.oid = r.ev_class join pg_namespace n on n.oid = c.relnamespace
 where r.rulename <> '_RETURN' and %OWN%
union all
select 'policy ' || n.nspname || '.' || c.relname || '.' || p.polname,
       p.polcmd::text || ' ' || case when p.polpermissive then 'permissive' else 'restrictive' end
       || ' using ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '-')
       || ' check ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-')
  from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
 where %OWN%
union all
select 'sequence ' || n.nspname || '.' || c.relname,
       format_type(q.seqtypid, null) || ' start ' || q.seqstart || ' increment ' || q.seqincrement
       || ' min ' || q.seqmin || ' max ' || q.seqmax || ' cache ' || q.seqcache
       || case when q.seqcycle then ' cycle' else '' end
  from pg_sequence q join pg_class c on c.oid = q.seqrelid join pg_namespace n on n.oid = c.relnamespace
 where %OWN%
union all
select 'schema ' || n.nspname, pg_get_userbyid(n.nspowner)::text
  from pg_namespace n where %OWN%
";

/// Grants on relations and default privileges, as `kind name` → ACL.
const PRIVILEGE_ITEMS: &str = "
select 'grants on ' || n.nspname || '.' || c.relname,
       coalesce(array_to_string(array(select x::text from unnest(c.relacl) x order by 1), ' '), '(owner only)')
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') and %OWN%
union all
select 'default privileges of ' || pg_get_userbyid(d.defaclrole) || ' on '
       || case d.defaclobjtype when 'r' then 'tables' when 'S' then 'sequences' when 'f' then 'functions'
                               when 'T' then 'types' when 'n' then 'schemas' else d.defaclobjtype::text end
       || coalesce(' in ' || n.nspname, ''),
       array_to_string(array(select x::text from unnest(d.defaclacl) x order by 1), ' ')
  from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace
union all
select 'grants on schema ' || n.nspname,
       coalesce(array_to_string(array(select x::text from unnest(n.nspacl) x order by 1), ' '), '(owner only)')
  from pg_namespace n where %OWN%
";

/// The service's own schemas (see [`crate::drift`]).
const OWN: &str = crate::drift::OWN_SCHEMAS;

async fn items(conn: &mut PgConnection, query: &str) -> Result<BTreeMap<String, String>, DbError> {
    let rows: Vec<(String, String)> = sqlx::query_as(&query.replace("%OWN%", OWN))
        .fetch_all(&mut *conn)
        .await
        .context(|| "reading the schema from the catalogs".into())?;
    Ok(rows
        .into_iter()
        .map(|(name, definition)| {
            let definition = if name.starts_with("constraint ") && definition.starts_with("CHECK") {
                normalise_check(&definition)
            } else {
                definition
            };
            (name, definition)
        })
        .collect())
}

/// A CHECK constraint's text without its parentheses and spaces: PostgreSQL deparses the
/// expression it stored, and a restored dump re-parses that text, which adds parentheses
/// (`(a)::text` and `((a)::text)` are one constraint). What remains still names every
/// column, operator and constant.
fn normalise_check(definition: &str) -> String {
    definition
        .chars()
        .filter(|c| !matches!(c, '(' | ')' | ' '))
        .collect()
}

/// Findings for every item that differs between `live` and `reference`.
fn compare(
    area: &'static str,
    live: &BTreeMap<String, String>,
    reference: &BTreeMap<String, String>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, want) in reference {
        match live.get(name) {
            None => out.push(Finding {
                area,
                detail: format!("{name}: missing (the migrations create it: {want})"),
            }),
            Some(got) if got != want => out.push(Finding {
                area,
                detail: format!("{name}: is `{got}`, the migrations make `{want}`"),
            }),
            Some(_) => {}
        }
    }
    for (name, got) in live {
        if !reference.contains_key(name) {
            out.push(Finding {
                area,
                detail: format!("{name}: not made by any migration (`{got}`)"),
            });
        }
    }
    out
}

/// Runs the gate for `service`.
pub async fn drift_gate(
    config: &Config,
    service: Service,
    migrator: &Migrator,
) -> Result<DriftReport, DbError> {
    let db = config.database(service);
    let mut report = DriftReport {
        service,
        database: db.database.clone(),
        findings: Vec::new(),
    };
    let mut live = ConnectTarget::role(db, Role::Readonly)?
        .with_session_settings(&[("search_path", CATALOG_SEARCH_PATH.to_owned())])
        .connect()
        .await?;
    let applied = applied(&mut live).await?;
    for m in migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match applied.iter().find(|a| a.version == m.version) {
            None => report.findings.push(Finding {
                area: "migrations",
                detail: format!(
                    "{} ({}): embedded in this build, not applied (run `marty db migrate --service {service}`)",
                    m.version, m.description
                ),
            }),
            Some(a) if *a.checksum != *m.checksum => report.findings.push(Finding {
                area: "migrations",
                detail: format!(
                    "{} ({}): applied with other contents than the file embedded (checksum changed: an applied migration was edited)",
                    m.version, m.description
                ),
            }),
            Some(_) => {}
        }
    }
    for a in &applied {
        if !migrator.iter().any(|m| m.version == a.version) {
            report.findings.push(Finding {
                area: "migrations",
                detail: format!(
                    "{} ({}): applied, unknown to this build",
                    a.version, a.description
                ),
            });
        }
    }
    let live_schema = items(&mut live, SCHEMA_ITEMS).await?;
    let live_privileges = items(&mut live, PRIVILEGE_ITEMS).await?;
    let role_model = crate::drift::database_drift(&mut live, service, &db.database).await?;
    live.close().await.ok();

    let (reference_schema, reference_privileges) = reference(config, service, migrator).await?;
    report
        .findings
        .extend(compare("schema", &live_schema, &reference_schema));
    report.findings.extend(compare(
        "privileges",
        &live_privileges,
        &reference_privileges,
    ));
    for d in role_model {
        let finding = Finding {
            area: "privileges",
            detail: format!("{}: {}", d.area, d.problem),
        };
        if !report.findings.contains(&finding) {
            report.findings.push(finding);
        }
    }
    Ok(report)
}

/// The schema and privilege items of a reference database built from `migrator` (see
/// [`compare_database`]); built in a scratch database that is dropped afterwards.
pub(crate) type Reference = (BTreeMap<String, String>, BTreeMap<String, String>);

pub(crate) async fn build_reference(
    config: &Config,
    service: Service,
    migrator: &Migrator,
) -> Result<Reference, DbError> {
    reference(config, service, migrator).await
}

/// Schema and privilege findings of `database` (on `service`'s server, e.g. a restored copy
/// before it is put in place) against `reference`.
pub(crate) async fn compare_database(
    config: &Config,
    service: Service,
    reference: &Reference,
    database: &str,
) -> Result<Vec<Finding>, DbError> {
    let db = config.database(service);
    let mut conn = ConnectTarget::role(db, Role::Readonly)?
        .with_database(database)
        .with_session_settings(&[("search_path", CATALOG_SEARCH_PATH.to_owned())])
        .connect()
        .await?;
    let schema = items(&mut conn, SCHEMA_ITEMS).await?;
    let privileges = items(&mut conn, PRIVILEGE_ITEMS).await?;
    conn.close().await.ok();
    let mut findings = compare("schema", &schema, &reference.0);
    findings.extend(compare("privileges", &privileges, &reference.1));
    Ok(findings)
}

/// The schema and privileges the role model and the migrations produce, built in a scratch
/// database on the service's server (dropped afterwards).
async fn reference(
    config: &Config,
    service: Service,
    migrator: &Migrator,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), DbError> {
    let db = config.database(service);
    // A fixed name: a run interrupted before its drop is cleared by the next one.
    let scratch = format!("marty_drift_{}", service.id());
    let mut admin = ConnectTarget::admin(config.admin())
        .at(&db.host, db.port, db.sslmode)
        .connect()
        .await?;
    let server_version: String = sqlx::query_scalar("select current_setting('server_version_num')")
        .fetch_one(&mut admin)
        .await
        .context(|| "reading the server version".into())?;
    let cache = reference_cache(config, service, migrator, &server_version);
    if let Some(found) = cache
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<Reference>(&b).ok())
    {
        admin.close().await.ok();
        return Ok(found);
    }
    crate::backup::drop_database(&mut admin, &scratch).await?;
    let built = async {
        // Created and hardened by `setup`'s own code, as the live database was.
        crate::provision::harden_copy(config, service, &scratch).await?;
        // Migrated as `marty db migrate` does it, with what it does after the migrations.
        let mut copy = db.clone();
        copy.database = scratch.clone();
        crate::migrate::migrate(&copy, migrator).await?;
        let mut readonly = ConnectTarget::role(db, Role::Readonly)?
            .with_database(&scratch)
            .with_session_settings(&[("search_path", CATALOG_SEARCH_PATH.to_owned())])
            .connect()
            .await?;
        let schema = items(&mut readonly, SCHEMA_ITEMS).await?;
        let privileges = items(&mut readonly, PRIVILEGE_ITEMS).await?;
        readonly.close().await.ok();
        Ok::<_, DbError>((schema, privileges))
    }
    .await;
    let _ = crate::backup::drop_database(&mut admin, &scratch).await;
    admin.close().await.ok();
    if let (Ok(reference), Some(path)) = (&built, &cache) {
        // Best effort: a read-only state directory only means building it again next time.
        let _ = serde_json::to_vec(reference)
            .ok()
            .map(|json| write_cache(path, &json));
    }
    built
}

/// Where the reference of (this binary, these migrations, this role model, this server's
/// version) is kept once built: building it takes a scratch database, and dropping that
/// database makes the server write out every dirty page — seconds during a large restore.
/// The state directory is the operator's own (0700; it holds the secrets file too).
fn reference_cache(
    config: &Config,
    service: Service,
    migrator: &Migrator,
    server_version: &str,
) -> Option<std::path::PathBuf> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let db = config.database(service);
    let mut h = Sha256::new();
    h.update(format!(
        "{service}\0{}\0{}\0{}\0{}:{}\0{server_version}\0{:?}\0",
        exe.display(),
        meta.len(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        db.host,
        db.port,
        config.role_policy()
    ));
    for role in Role::ALL {
        h.update(format!("{}={}\0", db.role_name(role), db.login_name(role)));
    }
    for m in migrator.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&*m.checksum);
    }
    let digest = h.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Some(
        config
            .state_dir
            .join("cache")
            .join(format!("reference-{}-{hex}.json", service.id())),
    )
}

fn write_cache(path: &std::path::Path, json: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    crate::backup::write_atomically(path, json, 0o600).map_err(std::io::Error::other)
}
