//! Verified backup and restore of one service's database.
//!
//! **Backup** (`marty db backup`) runs as the service's `readonly` role — the role the design
//! gives backups: it reads everything and can change nothing. One read-only repeatable-read
//! transaction exports its snapshot; `pg_dump -Fc` dumps that snapshot while the same
//! transaction counts and checksums every table, so the manifest describes exactly the rows of
//! the dump, and the two run side by side. The dump is streamed through SHA-256 into a
//! `.partial` file that is renamed only once complete and synced, then the manifest is written
//! the same way: a failed backup leaves the previous one as it was.
//!
//! **Restore** (`marty db restore`) never writes into a live database: it restores into a
//! scratch database on the service's server, as the service's `owner` role (`--no-owner
//! --no-acl`, so a dump made elsewhere brings neither its owners nor its grants, and nothing
//! in it runs with more than the owner's rights), checks the file against its manifest, the
//! applied migrations against the ones this binary embeds and every table against the
//! manifest, re-applies the role model of `setup`, and only then takes the target's name —
//! the database it replaces (with `--force`) is dropped last.
//!
//! **Verify** (`marty db backup verify`) restores into a scratch database, compares, drops it.
//!
//! Table checksums are order-independent sums of a 64-bit hash per row, computed by the server
//! (see [`ChecksumMethod`]; the manifest records the method per table), so a dump and its
//! restore agree whatever order the rows come back in.

use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use marty_config::{Config, Role, Service};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

use crate::connect::{CATALOG_SEARCH_PATH, ConnectTarget};
use crate::migrate::{AppliedMigration, applied};
use crate::provision::exec;
use crate::sql::ident;
use crate::{DbError, SqlContext};

/// The manifest beside each dump.
pub const MANIFEST: &str = "manifest.json";
/// What [`Manifest::format`] says for this layout.
pub const FORMAT: &str = "marty-backup/1";

/// Progress of long work, one line at a time (the CLI decides where it goes).
pub type Progress = Arc<dyn Fn(String) + Send + Sync>;

/// How a table's content checksum was computed; a restore recomputes it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ChecksumMethod {
    /// The sum of each row's 64-bit extended hash (`hash_record_extended`, the hash functions
    /// of hash indexes and hash partitioning, which PostgreSQL keeps stable across versions
    /// because both live on disk). It hashes values, not their text: about seven times cheaper
    /// than MD5 over the text form for JSON rows, and it treats values equal under their
    /// type's equality (`1.0` and `1.00`) as equal.
    #[serde(rename = "row-hash64")]
    RowHash64,
    /// The sum of the first 64 bits of each row's MD5 over its text form with fixed output
    /// settings: for tables with a column type that has no extended hash function, and what
    /// manifests without a method were made with.
    #[default]
    #[serde(rename = "md5-text")]
    Md5Text,
}

impl ChecksumMethod {
    /// The aggregate over a row `t` that yields the checksum as text.
    fn aggregate(self) -> &'static str {
        match self {
            ChecksumMethod::RowHash64 => "coalesce(sum(hash_record_extended(t, 0)), 0)::text",
            ChecksumMethod::Md5Text => {
                "coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)::text"
            }
        }
    }
}

/// Row count and content checksum of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSum {
    /// `schema.table`.
    pub table: String,
    pub rows: i64,
    pub checksum: String,
    #[serde(default)]
    pub method: ChecksumMethod,
}

/// What a backup holds, written beside its dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub service: Service,
    pub database: String,
    pub server_version: String,
    /// The newest applied migration, if any.
    pub migration_version: Option<i64>,
    pub migrations_applied: usize,
    pub tables: Vec<TableSum>,
    /// The dump's file name, in the manifest's directory.
    pub dump_file: String,
    pub dump_sha256: String,
    pub dump_bytes: u64,
    pub started_at: String,
    pub finished_at: String,
    pub made_by: String,
}

impl Manifest {
    pub fn rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

fn failed(message: impl Into<String>) -> DbError {
    DbError::Backup(message.into())
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `pg_dump` and `pg_restore`: beside `pg_ctl` (see [`crate::local::find_binaries`]), or
/// beside the file a `pg_ctl` symbolic link points to (`/usr/local/bin/pg_ctl` →
/// `/usr/lib/postgresql/15/bin/pg_ctl`).
pub fn client_program(name: &str) -> Result<PathBuf, DbError> {
    let bin = crate::local::find_binaries()?;
    let beside_link = std::fs::canonicalize(bin.join("pg_ctl"))
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)));
    std::iter::once(bin.join(name))
        .chain(beside_link)
        .find(|p| p.exists())
        .ok_or_else(|| {
            failed(format!(
                "{name} not found beside pg_ctl in {} (install the PostgreSQL client of the server's version, or set MARTY_PG_BIN_DIR)",
                bin.display()
            ))
        })
}

/// Session settings that make a row's text form the same on every server and session.
pub(crate) const STABLE_TEXT: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'; SET extra_float_digits = 1";

/// Row counts and checksums of every table of the connected database, in name order. Must
/// run inside a transaction (a savepoint guards the cheaper method). Each table is summed the
/// way `like` (a manifest) says it was, else with [`ChecksumMethod::RowHash64`] where every
/// column type supports it and [`ChecksumMethod::Md5Text`] otherwise.
async fn table_sums(
    conn: &mut PgConnection,
    like: Option<&Manifest>,
) -> Result<Vec<TableSum>, DbError> {
    sqlx::raw_sql(STABLE_TEXT)
        .execute(&mut *conn)
        .await
        .context(|| "setting the checksum session".into())?;
    let tables: Vec<(String, String)> = sqlx::query_as(&format!(
        "select n.nspname::text, c.relname::text
           from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
          where c.relkind = 'r' and {}
          order by 1, 2",
        crate::drift::OWN_SCHEMAS
    ))
    .fetch_all(&mut *conn)
    .await
    .context(|| "listing tables".into())?;
    let mut sums = Vec::with_capacity(tables.len());
    for (schema, table) in tables {
        let name = format!("{schema}.{table}");
        let relation = format!("{}.{}", ident(&schema), ident(&table));
        let recorded = like.and_then(|m| m.tables.iter().find(|t| t.table == name));
        let sum = |method: ChecksumMethod| {
            format!(
                "select count(*), {} from only {relation} t",
                method.aggregate()
            )
        };
        let (method, (rows, checksum)) = match recorded.map(|t| t.method) {
            Some(method) => (
                method,
                sqlx::query_as::<_, (i64, String)>(&sum(method))
                    .fetch_one(&mut *conn)
                    .await
                    .context(|| format!("checksumming {name} ({method:?})"))?,
            ),
            None => {
                exec(conn, "SAVEPOINT checksum").await?;
                match sqlx::query_as::<_, (i64, String)>(&sum(ChecksumMethod::RowHash64))
                    .fetch_one(&mut *conn)
                    .await
                {
                    Ok(found) => {
                        exec(conn, "RELEASE SAVEPOINT checksum").await?;
                        (ChecksumMethod::RowHash64, found)
                    }
                    // A column type without an extended hash function, or a server older
                    // than PostgreSQL 14: the text form works for every type.
                    Err(_) => {
                        exec(conn, "ROLLBACK TO SAVEPOINT checksum").await?;
                        (
                            ChecksumMethod::Md5Text,
                            sqlx::query_as::<_, (i64, String)>(&sum(ChecksumMethod::Md5Text))
                                .fetch_one(&mut *conn)
                                .await
                                .context(|| format!("checksumming {name}"))?,
                        )
                    }
                }
            }
        };
        sums.push(TableSum {
            table: name,
            rows,
            checksum,
            method,
        });
    }
    Ok(sums)
}

/// Streams `child`'s standard output into `path` through SHA-256; returns (hex digest,
/// bytes). Reports progress every few seconds.
fn stream_to_file(
    mut child: std::process::Child,
    path: &Path,
    label: &str,
    progress: &Progress,
) -> Result<(String, u64), DbError> {
    let io = |e: std::io::Error| failed(format!("{}: {e}", path.display()));
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| failed("no pipe from pg_dump"))?;
    let mut errors = child
        .stderr
        .take()
        .ok_or_else(|| failed("no pipe from pg_dump"))?;
    // Drained on its own thread, so that a chatty pg_dump never blocks on a full pipe.
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = errors.read_to_string(&mut s);
        s
    });
    let result = (|| {
        let mut file = create_private(path).map_err(io)?;
        let mut hash = Sha256::new();
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut last = std::time::Instant::now();
        loop {
            let n = out.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io)?;
            bytes += n as u64;
            if last.elapsed().as_secs() >= 2 {
                last = std::time::Instant::now();
                progress(format!("{label}: {} dumped", mib(bytes)));
            }
        }
        file.sync_all().map_err(io)?;
        Ok::<_, DbError>((hex(&hash.finalize()), bytes))
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(io)?;
    let stderr = stderr.join().unwrap_or_default();
    let (digest, bytes) = result?;
    if !status.success() {
        return Err(failed(format!(
            "pg_dump failed ({status}): {}",
            stderr.trim()
        )));
    }
    Ok((digest, bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` bytes as MiB with one decimal.
pub fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so that a reader
/// sees the old file or the new one, never a part; the file gets `mode`.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DbError> {
    let io = |e: std::io::Error| failed(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("partial");
    let mut f = create_fresh(&tmp, mode).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    sync_dir(path);
    Ok(())
}

/// A new file only the owner can read (a dump holds sealed keys and personal data), created
/// afresh: a leftover is removed first, and neither an existing file nor a symbolic link
/// planted in its place is followed (`O_EXCL`, `O_NOFOLLOW`).
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    create_fresh(path, 0o600)
}

fn create_fresh(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(O_NOFOLLOW)
        .open(path)
}

/// `O_NOFOLLOW` of Linux, the platform Marty's servers run on (its value differs by
/// architecture).
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const O_NOFOLLOW: i32 = 0o100000;
#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
const O_NOFOLLOW: i32 = 0o400000;

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Backs up `service`'s database into `out/<service>/`: `<database>.dump` (`pg_dump -Fc`) and
/// [`MANIFEST`].
pub async fn backup(
    config: &Config,
    service: Service,
    out: &Path,
    progress: Progress,
) -> Result<Manifest, DbError> {
    let db = config.database(service);
    let started_at = now();
    let pg_dump = client_program("pg_dump")?;
    let dir = out.join(service.id());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    let target = ConnectTarget::role(db, Role::Readonly)?
        .with_session_settings(&[("search_path", CATALOG_SEARCH_PATH.to_owned())]);
    let mut conn = target.connect().await?;
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await
        .context(|| format!("{service}: starting the backup's transaction"))?;
    let (snapshot, server_version): (String, String) =
        sqlx::query_as("select pg_export_snapshot(), current_setting('server_version')")
            .fetch_one(&mut conn)
            .await
            .context(|| format!("{service}: exporting the backup's snapshot"))?;
    let migrations = applied(&mut conn).await?;
    let dump_file = format!("{}.dump", db.database);
    let final_path = dir.join(&dump_file);
    let partial = dir.join(format!("{dump_file}.partial"));
    let mut cmd = target.libpq_command(&pg_dump);
    cmd.args(["--format=custom", "--no-password", "--snapshot"])
        .arg(&snapshot)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| failed(format!("starting {}: {e}", pg_dump.display())))?;
    let dumping = {
        let partial = partial.clone();
        let progress = progress.clone();
        let label = service.id().to_owned();
        tokio::task::spawn_blocking(move || stream_to_file(child, &partial, &label, &progress))
    };
    // The same snapshot, counted and checksummed while pg_dump reads it.
    let sums = table_sums(&mut conn, None).await;
    let dumped = dumping
        .await
        .map_err(|e| failed(format!("the dump's writer stopped: {e}")));
    // Held open until pg_dump is done: the snapshot lives as long as this transaction.
    let _ = sqlx::raw_sql("COMMIT").execute(&mut conn).await;
    conn.close().await.ok();
    let outcome = (|| {
        let (sha256, bytes) = dumped??;
        let tables = sums?;
        std::fs::rename(&partial, &final_path)
            .map_err(|e| failed(format!("{}: {e}", final_path.display())))?;
        sync_dir(&final_path);
        let manifest = Manifest {
            format: FORMAT.into(),
            service,
            database: db.database.clone(),
            server_version,
            migration_version: migrations.last().map(|m| m.version),
            migrations_applied: migrations.len(),
            tables,
            dump_file,
            dump_sha256: sha256,
            dump_bytes: bytes,
            started_at,
            finished_at: now(),
            made_by: format!("marty {}", env!("CARGO_PKG_VERSION")),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| failed(e.to_string()))?;
        write_atomically(&dir.join(MANIFEST), &json, 0o600)?;
        Ok::<_, DbError>(manifest)
    })();
    if outcome.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    let manifest = outcome?;
    // Recorded in the database so that the service itself can report the backup's age.
    crate::monitor::record_backup(db, &manifest)
        .await
        .map_err(|e| {
            failed(format!(
                "{service}: the dump and its manifest are complete in {}, but recording the backup in the database failed, so its age will not show in monitoring: {e}",
                dir.display()
            ))
        })?;
    Ok(manifest)
}

/// The manifest of the dump `file` (the [`MANIFEST`] in its directory that names it), if any.
pub fn manifest_of(file: &Path) -> Result<Option<Manifest>, DbError> {
    let path = file.parent().unwrap_or(Path::new(".")).join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(format!("{}: {e}", path.display()))),
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        failed(format!(
            "{}: not a Marty backup manifest: {e}",
            path.display()
        ))
    })?;
    if manifest.format != FORMAT {
        return Err(failed(format!(
            "{}: format {:?}, this build reads {FORMAT:?}",
            path.display(),
            manifest.format
        )));
    }
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    if name.as_deref() != Some(manifest.dump_file.as_str()) {
        return Ok(None);
    }
    Ok(Some(manifest))
}

/// SHA-256 and size of a file.
fn file_digest(path: &Path) -> Result<(String, u64), DbError> {
    let io = |e: std::io::Error| failed(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex(&hash.finalize()), bytes))
}

/// The file against its manifest: a difference means corrupted or replaced.
fn check_file(file: &Path, manifest: &Manifest) -> Result<(), String> {
    let (sha256, bytes) = file_digest(file).map_err(|e| e.to_string())?;
    if bytes != manifest.dump_bytes || sha256 != manifest.dump_sha256 {
        return Err(format!(
            "{}: {bytes} bytes with SHA-256 {sha256}, its manifest says {} bytes with {}: the file is corrupted or not the one backed up",
            file.display(),
            manifest.dump_bytes,
            manifest.dump_sha256
        ));
    }
    Ok(())
}

/// What the applied migrations of a restored dump say against this binary's `migrator`:
/// `Err` when they are not `service`'s (another service's dump, or a newer or edited build's).
/// `Ok(pending)` otherwise.
fn check_migrations(
    service: Service,
    applied: &[AppliedMigration],
    migrator: &Migrator,
) -> Result<usize, String> {
    if applied.is_empty() {
        return Err(format!(
            "the dump holds no applied migrations: it is not a {service} database made by `marty db migrate`"
        ));
    }
    let foreign: Vec<&AppliedMigration> = applied
        .iter()
        .filter(|a| {
            !migrator
                .iter()
                .any(|m| m.version == a.version && *m.checksum == *a.checksum)
        })
        .collect();
    // Services share some migrations word for word (the outbox DDL), so "another service's"
    // is decided by the majority, not by all.
    if foreign.len() * 2 > applied.len() {
        return Err(format!(
            "{} of the dump's {} applied migrations are not {service}'s (first: {} {}): this is a dump of another service's database",
            foreign.len(),
            applied.len(),
            foreign[0].version,
            foreign[0].description
        ));
    }
    if let Some(a) = foreign.first() {
        let known = migrator.iter().any(|m| m.version == a.version);
        return Err(if known {
            format!(
                "the dump's migration {} ({}) differs from the one this build embeds: made by a build with an edited migration",
                a.version, a.description
            )
        } else {
            format!(
                "the dump has migration {} ({}), which this build does not know: made by a newer Marty; restore with that version",
                a.version, a.description
            )
        });
    }
    Ok(migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .count())
}

/// Every difference between restored tables and a manifest, one line each, naming the table.
fn compare_tables(restored: &[TableSum], manifest: &Manifest) -> Vec<String> {
    let mut findings = Vec::new();
    for want in &manifest.tables {
        match restored.iter().find(|t| t.table == want.table) {
            None => findings.push(format!(
                "table {}: in the manifest, missing from the dump",
                want.table
            )),
            Some(got) if got.rows != want.rows => findings.push(format!(
                "table {}: {} rows restored, the manifest says {}",
                want.table, got.rows, want.rows
            )),
            Some(got) if got.checksum != want.checksum => findings.push(format!(
                "table {}: content checksum differs from the manifest ({} rows each)",
                want.table, got.rows
            )),
            Some(_) => {}
        }
    }
    for got in restored {
        if !manifest.tables.iter().any(|t| t.table == got.table) {
            findings.push(format!(
                "table {}: in the dump, not in the manifest",
                got.table
            ));
        }
    }
    findings
}

/// The administrative connection to `service`'s server, in its maintenance database.
async fn admin_on_server(config: &Config, service: Service) -> Result<PgConnection, DbError> {
    let db = config.database(service);
    ConnectTarget::admin(config.admin())
        .at(&db.host, db.port, db.sslmode)
        .connect()
        .await
}

async fn database_exists(conn: &mut PgConnection, name: &str) -> Result<bool, DbError> {
    sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .context(|| format!("looking up database {name}"))
}

pub(crate) async fn drop_database(conn: &mut PgConnection, name: &str) -> Result<(), DbError> {
    exec(
        conn,
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name)),
    )
    .await
}

/// What a restore into a scratch database found.
struct Restored {
    migrations: Vec<AppliedMigration>,
    tables: Vec<TableSum>,
}

/// Creates `scratch` (owned by the service's owner, closed to PUBLIC), restores `file` into it
/// as the owner, and reads its migrations and tables back as the owner.
async fn restore_into_scratch(
    config: &Config,
    service: Service,
    admin: &mut PgConnection,
    file: &Path,
    scratch: &str,
    progress: &Progress,
    manifest: Option<&Manifest>,
) -> Result<Restored, DbError> {
    let db = config.database(service);
    let owner = db.role_name(Role::Owner);
    drop_database(admin, scratch).await?;
    exec(
        admin,
        &format!("CREATE DATABASE {} OWNER {}", ident(scratch), ident(&owner)),
    )
    .await?;
    exec(
        admin,
        &format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", ident(scratch)),
    )
    .await?;
    let owner_target = ConnectTarget::role(db, Role::Owner)?
        .with_database(scratch)
        .with_session_settings(&[("search_path", CATALOG_SEARCH_PATH.to_owned())]);
    let pg_restore = client_program("pg_restore")?;
    let mut cmd = owner_target.libpq_command(&pg_restore);
    cmd.args([
        "--no-owner",
        "--no-acl",
        "--no-publications",
        "--no-subscriptions",
        "--no-security-labels",
        "--exit-on-error",
        "--no-password",
    ])
    // The scratch database is the unit of atomicity (it is dropped on any failure and only
    // renamed into place when everything checked out), so pg_restore need not hold one
    // transaction and can load tables and build indexes in parallel.
    .arg(format!("--jobs={}", restore_jobs()))
    .arg(format!("--dbname={scratch}"))
    .arg(file)
    .stdin(std::process::Stdio::null());
    progress(format!(
        "{service}: restoring {} into scratch database {scratch}",
        file.display()
    ));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("starting {}: {e}", pg_restore.display())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(failed(format!(
            "pg_restore of {} failed ({}): {}",
            file.display(),
            out.status,
            stderr.trim()
        )));
    }
    let mut conn = owner_target.connect().await?;
    let migrations = applied(&mut conn).await?;
    progress(format!("{service}: checksumming the restored tables"));
    // Whatever comes next drops a database (the replaced one, or this scratch after a
    // verify), and DROP DATABASE waits for a checkpoint that writes out every page the load
    // left dirty. Started now, that writing overlaps the checksums' reading instead of
    // following it. (Best effort: without the right to CHECKPOINT the drop does it later.)
    let (sums, _) = tokio::join!(
        async {
            exec(&mut conn, "BEGIN READ ONLY").await?;
            let tables = table_sums(&mut conn, manifest).await?;
            exec(&mut conn, "COMMIT").await?;
            Ok::<_, DbError>(tables)
        },
        sqlx::raw_sql("CHECKPOINT").execute(&mut *admin)
    );
    let tables = sums?;
    conn.close().await.ok();
    Ok(Restored { migrations, tables })
}

/// Parallel pg_restore jobs: one per core, at most four.
fn restore_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// A database name Marty may restore into: a plain lower-case identifier, not a system
/// database, not the legacy database, not another service's (by name — whichever server
/// holds it).
pub fn check_target_name(config: &Config, service: Service, name: &str) -> Result<(), DbError> {
    let plain = !name.is_empty()
        && name.len() <= 50
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !plain {
        return Err(failed(format!(
            "--into {name:?}: use a lower-case name of letters, digits and `_`, at most 50 characters"
        )));
    }
    if ["postgres", "template0", "template1"].contains(&name) || name == config.admin().database {
        return Err(failed(format!("--into {name}: a system database")));
    }
    if name == config.default_database().database {
        return Err(failed(format!(
            "--into {name}: the legacy shared database; a service's dump goes into a database of its own"
        )));
    }
    for other in Service::ALL.into_iter().filter(|s| *s != service) {
        if config.database(other).database == name {
            return Err(failed(format!(
                "--into {name}: {other}'s database; {service}'s dump never goes into another service's database"
            )));
        }
    }
    Ok(())
}

/// What `restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub service: Service,
    pub database: String,
    pub from: String,
    pub migration_version: Option<i64>,
    /// Migrations this binary embeds that the dump lacks (`marty db migrate` applies them).
    pub pending_migrations: usize,
    pub tables: usize,
    pub rows: i64,
    /// Whether the file was checked against a manifest (SHA-256, tables).
    pub manifest_checked: bool,
    /// Whether an existing database was replaced (`--force`).
    pub replaced: bool,
    /// What re-applying the role model changed on the restored copy.
    pub hardening: Vec<String>,
}

/// Restores `file` as `service`'s database (or into `into`), replacing an existing one only
/// with `force`.
pub async fn restore(
    config: &Config,
    service: Service,
    migrator: &Migrator,
    file: &Path,
    into: Option<&str>,
    force: bool,
    progress: Progress,
) -> Result<RestoreReport, DbError> {
    let db = config.database(service);
    let target = into.unwrap_or(&db.database).to_owned();
    check_target_name(config, service, &target)?;
    let manifest = manifest_of(file)?;
    if let Some(m) = &manifest {
        if m.service != service {
            return Err(failed(format!(
                "{} is a backup of {}'s database ({}), not {service}'s",
                file.display(),
                m.service,
                m.database
            )));
        }
        check_file(file, m).map_err(failed)?;
    } else {
        progress(format!(
            "{service}: no {MANIFEST} names {}; restoring without the manifest's checks",
            file.display()
        ));
    }
    let mut admin = admin_on_server(config, service).await?;
    let exists = database_exists(&mut admin, &target).await?;
    if exists && !force {
        return Err(failed(format!(
            "database {target} exists; restoring replaces it only with --force (nothing was changed)"
        )));
    }
    if exists {
        // Only a database that is this service's by its mark is replaced: --force never drops
        // an unrelated database that happens to have the name.
        let identity = crate::isolation::server_identity(&mut admin).await?;
        let mark: Option<String> = sqlx::query_scalar(
            "select shobj_description(oid, 'pg_database') from pg_database where datname = $1",
        )
        .bind(&target)
        .fetch_one(&mut admin)
        .await
        .context(|| format!("reading the mark of {target}"))?;
        if mark.as_deref() != Some(crate::startup::marker(service, identity).as_str()) {
            return Err(failed(format!(
                "database {target} is not marked as {service}'s by `marty db setup` on this server; refusing to replace it"
            )));
        }
    }
    let scratch = format!("{target}__restoring");
    // The migrations a dump holds, as this binary embeds them: the reference its schema must
    // match is built from exactly these.
    let upto = |versions: &[i64]| Migrator {
        migrations: std::borrow::Cow::Owned(
            migrator
                .iter()
                .filter(|m| versions.contains(&m.version))
                .cloned()
                .collect(),
        ),
        ignore_missing: migrator.ignore_missing,
        locking: migrator.locking,
        no_tx: migrator.no_tx,
    };
    let outcome = async {
        // With a manifest, the reference is built while pg_restore runs (it needs only the
        // dump's migration version); it is rebuilt below if the dump holds other migrations.
        let expected: Option<Vec<i64>> = manifest.as_ref().and_then(|m| {
            m.migration_version.map(|v| {
                migrator
                    .iter()
                    .filter(|x| !x.migration_type.is_down_migration() && x.version <= v)
                    .map(|x| x.version)
                    .collect()
            })
        });
        let early = expected.as_ref().map(|v| upto(v));
        let (restored, early_reference) = tokio::join!(
            restore_into_scratch(
                config,
                service,
                &mut admin,
                file,
                &scratch,
                &progress,
                manifest.as_ref()
            ),
            async {
                match &early {
                    Some(m) => Some(crate::gate::build_reference(config, service, m).await),
                    None => None,
                }
            }
        );
        let restored = restored?;
        let pending = check_migrations(service, &restored.migrations, migrator).map_err(failed)?;
        if let Some(m) = &manifest {
            let findings = compare_tables(&restored.tables, m);
            if !findings.is_empty() {
                return Err(failed(format!(
                    "the restored data differs from the manifest:\n  - {}",
                    findings.join("\n  - ")
                )));
            }
        }
        progress(format!(
            "{service}: applying the role model to the restored copy"
        ));
        let hardening = crate::provision::harden_copy(config, service, &scratch).await?;
        // The migrations' history as `marty db migrate` leaves it: readable by the service's
        // roles (a service checks its version at start), written by the owner only. The
        // restored table predates the copy's default privileges, so it is granted here.
        let mut owner = ConnectTarget::role(db, Role::Owner)?
            .with_database(&scratch)
            .connect()
            .await?;
        let (app, readonly) = (db.role_name(Role::App), db.role_name(Role::Readonly));
        exec(
            &mut owner,
            &format!(
                "GRANT SELECT ON public.{table} TO {}, {}; REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public.{table} FROM {}",
                ident(&app),
                ident(&readonly),
                ident(&app),
                table = crate::provision::MIGRATIONS_TABLE
            ),
        )
        .await?;
        // A dump made before the backup history existed gets an empty one.
        crate::monitor::ensure_backup_history(&mut owner, db).await?;
        owner.close().await.ok();
        if !hardening.unrepaired.is_empty() {
            return Err(failed(format!(
                "the restored copy keeps deviations setup cannot repair:\n  - {}",
                hardening
                    .unrepaired
                    .iter()
                    .map(|c| format!("{}: {}", c.scope, c.action))
                    .collect::<Vec<_>>()
                    .join("\n  - ")
            )));
        }
        // The schema must be what this build's migrations make (up to the dump's version): a
        // dump with a hand-added table, trigger or function would otherwise become the
        // service's database, and the service would run whatever it holds.
        progress(format!(
            "{service}: comparing the restored schema with what the migrations make"
        ));
        let versions: Vec<i64> = restored.migrations.iter().map(|m| m.version).collect();
        let reference = match early_reference {
            Some(Ok(r)) if expected.as_deref() == Some(versions.as_slice()) => r,
            _ => crate::gate::build_reference(config, service, &upto(&versions)).await?,
        };
        let findings =
            crate::gate::compare_database(config, service, &reference, &scratch).await?;
        if !findings.is_empty() {
            return Err(failed(format!(
                "the dump's schema is not what this build's migrations make, so it is not put in place:\n  - {}",
                findings
                    .iter()
                    .map(|f| format!("{}: {}", f.area, f.detail))
                    .collect::<Vec<_>>()
                    .join("\n  - ")
            )));
        }
        Ok::<_, DbError>((restored, pending, hardening))
    }
    .await;
    let (restored, pending, hardening) = match outcome {
        Ok(x) => x,
        Err(e) => {
            let _ = drop_database(&mut admin, &scratch).await;
            return Err(e);
        }
    };
    if exists {
        swap(&mut admin, &scratch, &target).await?;
    } else {
        exec(
            &mut admin,
            &format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(&scratch),
                ident(&target)
            ),
        )
        .await?;
    }
    admin.close().await.ok();
    Ok(RestoreReport {
        service,
        database: target,
        from: file.display().to_string(),
        migration_version: restored.migrations.last().map(|m| m.version),
        pending_migrations: pending,
        tables: restored.tables.len(),
        rows: restored.tables.iter().map(|t| t.rows).sum(),
        manifest_checked: manifest.is_some(),
        replaced: exists,
        hardening: hardening
            .changes
            .iter()
            .map(|c| format!("{}: {}", c.scope, c.action))
            .collect(),
    })
}

/// Puts `scratch` in `target`'s place: no new sessions on `target`, its sessions ended, its
/// name moved aside, the scratch renamed; the old database is dropped only after that — a
/// failure in between renames it back.
async fn swap(admin: &mut PgConnection, scratch: &str, target: &str) -> Result<(), DbError> {
    let previous = format!("{target}__replaced");
    drop_database(admin, &previous).await?;
    exec(
        admin,
        &format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", ident(target)),
    )
    .await?;
    let moved = async {
        sqlx::query(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
        )
        .bind(target)
        .execute(&mut *admin)
        .await
        .context(|| format!("ending the sessions of {target}"))?;
        exec(
            admin,
            &format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(target),
                ident(&previous)
            ),
        )
        .await
    }
    .await;
    if let Err(e) = moved {
        let _ = exec(
            admin,
            &format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", ident(target)),
        )
        .await;
        return Err(e);
    }
    if let Err(e) = exec(
        admin,
        &format!(
            "ALTER DATABASE {} RENAME TO {}",
            ident(scratch),
            ident(target)
        ),
    )
    .await
    {
        let _ = exec(
            admin,
            &format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(&previous),
                ident(target)
            ),
        )
        .await;
        let _ = exec(
            admin,
            &format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", ident(target)),
        )
        .await;
        return Err(e);
    }
    drop_database(admin, &previous).await
}

/// What `backup verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct BackupCheck {
    pub file: String,
    pub service: Service,
    pub database: String,
    pub migration_version: Option<i64>,
    pub tables_checked: usize,
    pub rows: i64,
    /// Every difference, one line each; empty when the backup holds what its manifest says.
    pub findings: Vec<String>,
}

/// Restores `file` into a scratch database and compares it with its manifest; the scratch is
/// dropped whatever happens.
pub async fn verify_backup(
    config: &Config,
    migrator_of: impl Fn(Service) -> &'static Migrator,
    file: &Path,
    progress: Progress,
) -> Result<BackupCheck, DbError> {
    let manifest = manifest_of(file)?.ok_or_else(|| {
        failed(format!(
            "no {MANIFEST} beside {} names it: `backup verify` compares a dump with the manifest `marty db backup` wrote",
            file.display()
        ))
    })?;
    let service = manifest.service;
    let mut check = BackupCheck {
        file: file.display().to_string(),
        service,
        database: manifest.database.clone(),
        migration_version: manifest.migration_version,
        tables_checked: 0,
        rows: 0,
        findings: Vec::new(),
    };
    if let Err(f) = check_file(file, &manifest) {
        check.findings.push(f);
        return Ok(check);
    }
    let mut admin = admin_on_server(config, service).await?;
    // A fixed name: a run interrupted before its drop is cleared by the next one.
    let scratch = format!("marty_verify_{}", service.id());
    let restored = restore_into_scratch(
        config,
        service,
        &mut admin,
        file,
        &scratch,
        &progress,
        Some(&manifest),
    )
    .await;
    let _ = drop_database(&mut admin, &scratch).await;
    admin.close().await.ok();
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            check
                .findings
                .push(format!("the dump does not restore: {e}"));
            return Ok(check);
        }
    };
    let version = restored.migrations.last().map(|m| m.version);
    if version != manifest.migration_version {
        check.findings.push(format!(
            "migration version: {version:?} restored, the manifest says {:?}",
            manifest.migration_version
        ));
    }
    if let Err(f) = check_migrations(service, &restored.migrations, migrator_of(service)) {
        check.findings.push(format!("migrations: {f}"));
    }
    check
        .findings
        .extend(compare_tables(&restored.tables, &manifest));
    check.tables_checked = restored.tables.len();
    check.rows = restored.tables.iter().map(|t| t.rows).sum();
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(tables: Vec<TableSum>) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            service: Service::Csca,
            database: "marty_csca".into(),
            server_version: "15".into(),
            migration_version: Some(1),
            migrations_applied: 1,
            tables,
            dump_file: "marty_csca.dump".into(),
            dump_sha256: String::new(),
            dump_bytes: 0,
            started_at: String::new(),
            finished_at: String::new(),
            made_by: String::new(),
        }
    }

    fn sum(table: &str, rows: i64, checksum: &str) -> TableSum {
        TableSum {
            table: table.into(),
            rows,
            checksum: checksum.into(),
            method: ChecksumMethod::RowHash64,
        }
    }

    #[test]
    fn every_difference_names_its_table() {
        let m = manifest(vec![
            sum("public.a", 3, "1"),
            sum("public.b", 2, "2"),
            sum("public.c", 1, "3"),
        ]);
        let restored = [
            sum("public.a", 3, "1"),
            sum("public.b", 2, "9"),
            sum("public.d", 0, "0"),
        ];
        let findings = compare_tables(&restored, &m);
        assert_eq!(findings.len(), 3, "{findings:?}");
        assert!(findings[0].starts_with("table public.b: content checksum"));
        assert!(findings[1].starts_with("table public.c: in the manifest, missing"));
        assert!(findings[2].starts_with("table public.d: in the dump, not in"));
        assert!(
            compare_tables(
                &[sum("public.a", 4, "1")],
                &manifest(vec![sum("public.a", 3, "1")])
            )[0]
            .contains("4 rows restored, the manifest says 3")
        );
    }

    #[test]
    fn a_table_without_a_method_was_summed_by_md5_and_the_method_round_trips() {
        let old: TableSum =
            serde_json::from_str(r#"{"table": "public.a", "rows": 1, "checksum": "7"}"#).unwrap();
        assert_eq!(old.method, ChecksumMethod::Md5Text);
        let new = sum("public.a", 1, "7");
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["method"], "row-hash64");
        assert_eq!(serde_json::from_value::<TableSum>(json).unwrap(), new);
    }
}
