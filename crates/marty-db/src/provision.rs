//! `marty db setup`: idempotent, convergent provisioning of every service's roles, database
//! and hardening (DESIGN §3).
//!
//! Each step reads the current state from the catalogs, compares it with the desired state and
//! changes only what differs, recording a [`Change`] that names the repair. A second run
//! therefore reports nothing, and a run after someone re-granted `CONNECT` to `PUBLIC`,
//! dropped a default privilege, changed an owner or gave a role `CREATEDB` repairs exactly that.
//! Every step is safe to repeat, so a run interrupted half-way is finished by the next one.

use std::collections::{BTreeMap, BTreeSet};

use marty_config::{Config, Role, Service, ServiceDatabase};
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::connect::{ConnectFailure, ConnectTarget, describe_connect_error, sqlstate};
use crate::drift::{self, Drift, grantee_sql};
use crate::isolation::{Probe, ensure_isolated, server_identity};
use crate::sql::{ident, literal};
use crate::{DbError, SqlContext, scram};

/// The table `setup` creates in every database so that `verify` can prove read and write
/// privileges by acting on a real row rather than by reading catalogs.
pub const PROBE_TABLE: &str = "marty_isolation_probe";

/// One thing `setup` created or repaired.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Change {
    /// The database or role concerned.
    pub scope: String,
    pub action: String,
}

/// What a `setup` run did, and what it found but could not repair (then it fails).
#[derive(Debug, Default, Serialize)]
pub struct SetupReport {
    pub changes: Vec<Change>,
    /// Deviations `setup` may not or could not repair, each named: an operator must act.
    pub unrepaired: Vec<Change>,
}

impl SetupReport {
    /// Runs the repairs of `drifts`, recording each change, and every drift it cannot repair.
    async fn repair(&mut self, conn: &mut PgConnection, drifts: Vec<Drift>) {
        for d in drifts {
            match &d.repair {
                Some(sql) => match exec(conn, sql).await {
                    Ok(()) => {
                        tracing::info!(scope = %d.scope, action = %d.repaired, "setup change");
                        self.changes.push(Change {
                            scope: d.scope,
                            action: d.repaired,
                        });
                    }
                    Err(e) => self.unrepaired.push(Change {
                        scope: d.scope,
                        action: format!("{} (the repair failed: {e})", d.problem),
                    }),
                },
                None => self.unrepaired.push(Change {
                    scope: d.scope,
                    action: d.problem,
                }),
            }
        }
    }
}

/// Privileges the app and readonly roles get, through default privileges, on tables and
/// sequences the owner creates.
const APP_TABLE_PRIVILEGES: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE"];
const READONLY_TABLE_PRIVILEGES: &[&str] = &["SELECT"];
const APP_SEQUENCE_PRIVILEGES: &[&str] = &["SELECT", "USAGE"];
const READONLY_SEQUENCE_PRIVILEGES: &[&str] = &["SELECT"];
/// sqlx's bookkeeping table: the app role may read it (status) but never rewrite history.
pub const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Tables the platform keeps in every service database beside the service's own: the
/// migrations' history and the backup history. The `app` role may read them, never write.
pub const PLATFORM_TABLES: [&str; 2] = [MIGRATIONS_TABLE, crate::monitor::BACKUP_HISTORY_TABLE];

pub(crate) fn is_platform_table(name: &str) -> bool {
    PLATFORM_TABLES.contains(&name)
}

pub(crate) struct Recorder<'a> {
    pub(crate) report: &'a mut SetupReport,
    pub(crate) scope: String,
}

impl Recorder<'_> {
    fn change(&mut self, action: impl Into<String>) {
        let action = action.into();
        tracing::info!(scope = %self.scope, %action, "setup change");
        self.report.changes.push(Change {
            scope: self.scope.clone(),
            action,
        });
    }
}

/// What the administrative role may do.
struct AdminCapabilities {
    user: String,
    superuser: bool,
}

/// The advisory lock that serialises `setup` runs on a server: two runs at once on a fresh
/// server would both try to create the same roles. Advisory locks belong to one database, so
/// every run takes it in the same one, `postgres` (the administrator's maintenance database
/// when the server has none), whatever maintenance database it works from.
const SETUP_LOCK: i64 = 0x6d61_7274_795f_7375; // "marty_su"
const SETUP_LOCK_DATABASE: &str = "postgres";

/// The administrative connections of one run, one per server — servers told apart by their
/// identity, not their address, so that a second spelling of a server shares its connection
/// (and its lock: taking it twice from two sessions of one run would wait forever).
struct Servers {
    connections: Vec<(i64, PgConnection)>,
    /// The sessions holding each server's setup lock.
    locks: Vec<PgConnection>,
}

impl Servers {
    /// The connection to the server `target` reaches, opened (and locked) if it is new.
    async fn get(&mut self, target: &ConnectTarget) -> Result<&mut PgConnection, DbError> {
        let mut conn = target.connect().await?;
        let identity = server_identity(&mut conn).await?;
        if let Some(i) = self.connections.iter().position(|(id, _)| *id == identity) {
            conn.close().await.ok();
            return Ok(&mut self.connections[i].1);
        }
        admin_capabilities(&mut conn).await?;
        let lock_target = target.with_database(SETUP_LOCK_DATABASE);
        let mut lock = match lock_target.try_connect().await {
            Ok(lock) => lock,
            Err(ConnectFailure::Driver(e)) if sqlstate(&e).as_deref() == Some("3D000") => {
                target.connect().await?
            }
            Err(_) => lock_target.connect().await?,
        };
        let free: bool = sqlx::query_scalar("select pg_catalog.pg_try_advisory_lock($1)")
            .bind(SETUP_LOCK)
            .fetch_one(&mut lock)
            .await
            .context(|| format!("{}: taking the setup lock", target.describe()))?;
        if !free {
            eprintln!(
                "setup: another `marty db setup` is provisioning {}; waiting for it to finish",
                target.describe()
            );
            sqlx::query("select pg_catalog.pg_advisory_lock($1)")
                .bind(SETUP_LOCK)
                .execute(&mut lock)
                .await
                .context(|| format!("{}: waiting for the setup lock", target.describe()))?;
        }
        self.locks.push(lock);
        self.connections.push((identity, conn));
        let last = self.connections.len() - 1;
        Ok(&mut self.connections[last].1)
    }

    async fn close(self) {
        for (_, conn) in self.connections {
            conn.close().await.ok();
        }
        // Closing the session releases its advisory lock.
        for lock in self.locks {
            lock.close().await.ok();
        }
    }
}

/// Provisions `services` (all four and the legacy database when `services` is all of them).
pub async fn setup(config: &Config, services: &[Service]) -> Result<SetupReport, DbError> {
    let admin_target = ConnectTarget::admin(config.admin());
    let mut report = SetupReport::default();
    let mut servers = Servers {
        connections: Vec::new(),
        locks: Vec::new(),
    };
    // The administrative connection first, so that wrong credentials are reported as such;
    // then the guard, before anything changes.
    let caps = {
        let admin = servers.get(&admin_target).await?;
        admin_capabilities(admin).await?
    };
    if let Err(e) = ensure_isolated(config, Probe::Admin).await {
        servers.close().await;
        return Err(e);
    }
    let outcome = async {
        for &service in services {
            let db = config.database(service);
            // Each service database may live on its own server; provision it there.
            let server = admin_target.at(&db.host, db.port, db.sslmode);
            let conn = servers.get(&server).await?;
            provision_service(config, db, conn, &server, &caps, &mut report, false).await?;
        }
        // Settings made for every role of a server reach the service roles too.
        for (_, conn) in servers.connections.iter_mut() {
            let drifts = drift::cluster_drift(conn).await?;
            report.repair(conn, drifts).await;
        }
        if services.len() == Service::ALL.len() {
            let legacy = config.default_database();
            let server = admin_target.for_legacy(legacy);
            let conn = servers
                .get(&server.with_database(&admin_target.database))
                .await?;
            provision_legacy(conn, &server, &caps, &mut report).await?;
        }
        Ok::<_, DbError>(())
    }
    .await;
    servers.close().await;
    outcome?;
    Ok(report)
}

/// Applies `service`'s role model to `database`, a copy of its database on the service's
/// server (a restore, before it takes the configured name): owner, CONNECT, schema and
/// default privileges, grants on what exists, drift repairs, the service's mark — everything
/// `setup` does for the database itself, so a dump made elsewhere keeps none of its grants.
/// Roles are left as they are: they belong to the cluster, and only `setup` converges them.
pub async fn harden_copy(
    config: &Config,
    service: Service,
    database: &str,
) -> Result<SetupReport, DbError> {
    let mut db = config.database(service).clone();
    db.database = database.to_owned();
    let server = ConnectTarget::admin(config.admin()).at(&db.host, db.port, db.sslmode);
    let mut report = SetupReport::default();
    let mut servers = Servers {
        connections: Vec::new(),
        locks: Vec::new(),
    };
    let outcome = async {
        let conn = servers.get(&server).await?;
        let caps = admin_capabilities(conn).await?;
        provision_service(config, &db, conn, &server, &caps, &mut report, true).await
    }
    .await;
    servers.close().await;
    outcome?;
    Ok(report)
}

async fn admin_capabilities(conn: &mut PgConnection) -> Result<AdminCapabilities, DbError> {
    let (user, superuser, createrole, createdb): (String, bool, bool, bool) = sqlx::query_as(
        "select rolname::text, rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await
    .context(|| "reading the administrative role's privileges".into())?;
    let missing: Vec<&str> = [(createrole, "CREATEROLE"), (createdb, "CREATEDB")]
        .into_iter()
        .filter(|(has, _)| !superuser && !has)
        .map(|(_, name)| name)
        .collect();
    if !missing.is_empty() {
        return Err(DbError::AdminPrivilege {
            user,
            missing: missing.join(" and "),
        });
    }
    Ok(AdminCapabilities { user, superuser })
}

pub(crate) async fn exec(conn: &mut PgConnection, sql: &str) -> Result<(), DbError> {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|source| DbError::Sql {
            // Verifiers are not secrets in the clear, but keep them out of messages anyway.
            context: format!("running `{}`", redact_password(sql)),
            source,
        })
}

fn redact_password(sql: &str) -> String {
    match sql.find(" PASSWORD '") {
        Some(i) => format!("{} PASSWORD '…'", &sql[..i]),
        None => sql.to_owned(),
    }
}

async fn provision_service(
    config: &Config,
    db: &ServiceDatabase,
    admin: &mut PgConnection,
    server: &ConnectTarget,
    caps: &AdminCapabilities,
    report: &mut SetupReport,
    database_only: bool,
) -> Result<(), DbError> {
    let service = db.service;
    let policy = config.role_policy();
    let owner = db.role_name(Role::Owner);
    let app = db.role_name(Role::App);
    let readonly = db.role_name(Role::Readonly);

    let mut created_roles = BTreeSet::new();
    // A copy of the database (restore, the drift gate's reference) changes no role: roles are
    // the cluster's, and only `setup` converges them.
    for role in Role::ALL.into_iter().filter(|_| !database_only) {
        let name = db.role_name(role);
        let mut rec = Recorder {
            report,
            scope: name.clone(),
        };
        let limit = policy.connection_limits.get(&role).copied().unwrap_or(-1);
        if ensure_role(admin, &name, db, role, limit, &mut rec).await? {
            created_roles.insert(role);
        }
        revoke_memberships(admin, &name, &mut rec).await?;
    }
    if !database_only {
        let mut rec = Recorder {
            report,
            scope: app.clone(),
        };
        let wanted = [
            (
                "statement_timeout",
                policy.app_statement_timeout.as_millis().to_string(),
            ),
            (
                "idle_in_transaction_session_timeout",
                policy
                    .app_idle_in_transaction_timeout
                    .as_millis()
                    .to_string(),
            ),
        ];
        ensure_role_settings(admin, &app, &wanted, &mut rec).await?;
    }
    // Members from outside, settings beyond the policy, password expiry.
    // The alternate logins too: nobody may be made a member of one either.
    let roles: Vec<String> = Role::ALL
        .iter()
        .flat_map(|r| {
            let name = db.role_name(*r);
            [marty_config::alternate_login(&name), name]
        })
        .collect();
    if !database_only {
        let drifts = drift::role_drift(admin, &roles, &caps.user).await?;
        report.repair(admin, drifts).await;
    }

    // An administrator without SUPERUSER acts on the database through membership in its owner.
    if !caps.superuser && !database_only {
        let member: bool = sqlx::query_scalar("select pg_has_role(current_user, $1, 'MEMBER')")
            .bind(&owner)
            .fetch_one(&mut *admin)
            .await
            .context(|| format!("checking membership of {} in {owner}", caps.user))?;
        if !member {
            exec(
                admin,
                &format!("GRANT {} TO {}", ident(&owner), ident(&caps.user)),
            )
            .await?;
            report.changes.push(Change {
                scope: owner.clone(),
                action: format!(
                    "granted to administrative role {} so it can manage the database",
                    caps.user
                ),
            });
        }
    }

    // (A template database is refused by the isolation guard unless the service owns it;
    // then the drift repair below clears the mark.)
    let mut rec = Recorder {
        report,
        scope: db.database.clone(),
    };
    ensure_database(admin, &db.database, &owner, &[&app, &readonly], &mut rec).await?;
    ensure_marker(admin, service, &db.database, &mut rec).await?;

    let mut conn = server.with_database(&db.database).connect().await?;
    exec(&mut conn, "SET standard_conforming_strings = on").await?;
    // Event triggers off and owners first: an event trigger would run as the administrator
    // at the first change below, and changing an owner rewrites the object's privileges, so
    // the grants are computed on the objects as they will stay.
    let (owners, _) =
        split_ownership(drift::database_drift(&mut conn, service, &db.database).await?);
    report.repair(&mut conn, owners).await;
    let mut rec = Recorder {
        report,
        scope: db.database.clone(),
    };
    ensure_public_schema(&mut conn, &owner, &[&app, &readonly], &mut rec).await?;
    ensure_default_privileges(&mut conn, &owner, &app, &readonly, &mut rec).await?;
    revoke_stray_relation_grants(&mut conn, &owner, &app, &readonly, &mut rec).await?;
    ensure_existing_relations(&mut conn, &app, &readonly, &mut rec).await?;
    ensure_probe_table(&mut conn, Some(&owner), &mut rec).await?;
    // The owner's own privileges, column grants, other schemas, SECURITY DEFINER routines and
    // default privileges beyond the owner's in public.
    let (_, drifts) =
        split_ownership(drift::database_drift(&mut conn, service, &db.database).await?);
    report.repair(&mut conn, drifts).await;
    conn.close().await.ok();

    // A credential that belongs to a role's alternate login: that login exists, as safe as
    // the role, and is a member of the role and of nothing else.
    for role in Role::ALL.into_iter().filter(|_| !database_only) {
        let login = db.login_name(role);
        if login != db.role_name(role) {
            let limit = policy.connection_limits.get(&role).copied().unwrap_or(-1);
            let mut rec = Recorder {
                report,
                scope: login.clone(),
            };
            ensure_alternate(admin, db, role, limit, &mut rec).await?;
        }
    }

    // Prove each pre-existing role's password is the configured one by logging in with it.
    for role in Role::ALL
        .into_iter()
        .filter(|r| !created_roles.contains(r) && !database_only)
    {
        let name = db.login_name(role);
        let target = ConnectTarget::role(db, role)?;
        match target.try_connect().await {
            Ok(conn) => {
                conn.close().await.ok();
            }
            Err(ConnectFailure::Driver(e)) if sqlstate(&e).as_deref() == Some("28P01") => {
                let verifier = scram::verifier(crate::connect::expose_password(db, role)?);
                exec(
                    admin,
                    &format!(
                        "ALTER ROLE {} PASSWORD {}",
                        ident(&name),
                        literal(&verifier)
                    ),
                )
                .await?;
                report.changes.push(Change {
                    scope: name,
                    action: "password reset to the configured one (login with it failed)".into(),
                });
            }
            Err(ConnectFailure::Driver(e)) => {
                return Err(DbError::Connect {
                    target: target.describe(),
                    message: format!(
                        "checking the password of {service}'s {role} role: {}",
                        describe_connect_error(&e)
                    ),
                });
            }
            Err(ConnectFailure::Timeout) => {
                return Err(DbError::Connect {
                    target: target.describe(),
                    message: "no answer within the connect timeout".into(),
                });
            }
        }
    }
    Ok(())
}

/// (drift to repair first, the rest): event triggers are disabled before anything else
/// changes the schema (they would run as the administrator), then owners change (which
/// rewrites privileges, so grants are computed after).
fn split_ownership(drifts: Vec<Drift>) -> (Vec<Drift>, Vec<Drift>) {
    drifts
        .into_iter()
        .partition(|d| d.area == "event triggers" || d.area == "object ownership")
}

async fn provision_legacy(
    admin: &mut PgConnection,
    server: &ConnectTarget,
    caps: &AdminCapabilities,
    report: &mut SetupReport,
) -> Result<(), DbError> {
    let mut rec = Recorder {
        report,
        scope: server.database.clone(),
    };
    // The legacy database keeps its administrator as owner: no service role may use it.
    ensure_database(admin, &server.database, &caps.user, &[], &mut rec).await?;
    let mut conn = server.connect().await?;
    ensure_public_schema(&mut conn, &caps.user, &[], &mut rec).await?;
    ensure_probe_table(&mut conn, None, &mut rec).await?;
    conn.close().await.ok();
    Ok(())
}

/// Creates the role if missing (returns true), else repairs its attributes.
async fn ensure_role(
    conn: &mut PgConnection,
    name: &str,
    db: &ServiceDatabase,
    role: Role,
    limit: i32,
    rec: &mut Recorder<'_>,
) -> Result<bool, DbError> {
    let row: Option<(bool, bool, bool, bool, bool, bool, i32)> = sqlx::query_as(
        "select rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolreplication, rolcanlogin, rolconnlimit
         from pg_roles where rolname = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .context(|| format!("reading role {name}"))?;
    let Some((superuser, createdb, createrole, bypassrls, replication, login, connlimit)) = row
    else {
        let verifier = scram::verifier(crate::connect::expose_password(db, role)?);
        exec(
            conn,
            &format!(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {limit} PASSWORD {}",
                ident(name),
                literal(&verifier)
            ),
        )
        .await?;
        rec.change(format!(
            "created role (LOGIN, scram-sha-256 password, connection limit {limit})"
        ));
        return Ok(true);
    };
    let mut fixes = Vec::new();
    for (wrong, fix) in [
        (superuser, "NOSUPERUSER"),
        (createdb, "NOCREATEDB"),
        (createrole, "NOCREATEROLE"),
        (bypassrls, "NOBYPASSRLS"),
        (replication, "NOREPLICATION"),
        // While the credential is the alternate's (password rotation), whether the role
        // itself may log in is the rotation's business: during the overlap it must, after
        // `--finish` it must not.
        (!login && db.login_name(role) == name, "LOGIN"),
    ] {
        if wrong {
            fixes.push(fix.to_owned());
        }
    }
    if connlimit != limit {
        fixes.push(format!("CONNECTION LIMIT {limit}"));
    }
    if !fixes.is_empty() {
        exec(
            conn,
            &format!("ALTER ROLE {} {}", ident(name), fixes.join(" ")),
        )
        .await?;
        rec.change(format!("repaired attributes: {}", fixes.join(", ")));
    }
    Ok(false)
}

/// Creates or repairs the alternate login of `role` (see `marty db rotate-password`): LOGIN
/// with none of the dangerous attributes, the role's connection limit, the configured
/// password when it is created, membership in the role and in nothing else.
pub(crate) async fn ensure_alternate(
    conn: &mut PgConnection,
    db: &ServiceDatabase,
    role: Role,
    limit: i32,
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    let base = db.role_name(role);
    let login = marty_config::alternate_login(&base);
    let exists: bool =
        sqlx::query_scalar("select exists (select from pg_roles where rolname = $1)")
            .bind(&login)
            .fetch_one(&mut *conn)
            .await
            .context(|| format!("looking for role {login}"))?;
    let attributes = format!(
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT {limit}"
    );
    if exists {
        exec(conn, &format!("ALTER ROLE {} {attributes}", ident(&login))).await?;
    } else {
        let verifier = scram::verifier(crate::connect::expose_password(db, role)?);
        exec(
            conn,
            &format!(
                "CREATE ROLE {} {attributes} PASSWORD {}",
                ident(&login),
                literal(&verifier)
            ),
        )
        .await?;
        rec.change(format!("created the alternate login of {base}"));
    }
    let member: bool = sqlx::query_scalar("select pg_has_role($1, $2, 'MEMBER')")
        .bind(&login)
        .bind(&base)
        .fetch_one(&mut *conn)
        .await
        .context(|| format!("checking membership of {login} in {base}"))?;
    if !member {
        exec(
            conn,
            &format!("GRANT {} TO {}", ident(&base), ident(&login)),
        )
        .await?;
        rec.change(format!("granted {base} to its alternate login"));
    }
    let others: Vec<String> = sqlx::query_scalar(
        "select r.rolname::text from pg_auth_members am
           join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member
          where m.rolname = $1 and r.rolname <> $2",
    )
    .bind(&login)
    .bind(&base)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading memberships of {login}"))?;
    for other in others {
        exec(
            conn,
            &format!("REVOKE {} FROM {}", ident(&other), ident(&login)),
        )
        .await?;
        rec.change(format!("revoked membership of {login} in {other}"));
    }
    let members: Vec<String> = sqlx::query_scalar(
        "select m.rolname::text from pg_auth_members am
           join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member
          where r.rolname = $1",
    )
    .bind(&login)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading members of {login}"))?;
    for member in members {
        exec(
            conn,
            &format!("REVOKE {} FROM {}", ident(&login), ident(&member)),
        )
        .await?;
        rec.change(format!("revoked membership of {member} in {login}"));
    }
    Ok(())
}

/// A service role is a member of no other role, and no other role is a member of it, except
/// an administrator who manages it.
async fn revoke_memberships(
    conn: &mut PgConnection,
    name: &str,
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select r.rolname::text, m.rolname::text
         from pg_auth_members am
         join pg_roles r on r.oid = am.roleid
         join pg_roles m on m.oid = am.member
         where m.rolname = $1 or (r.rolname = $1 and m.rolname like 'marty\\_%')",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading memberships of {name}"))?;
    for (granted, member) in rows {
        if Service::parse_role_name(&member).is_none() {
            continue;
        }
        // The role's own alternate login (password rotation) is its one allowed member.
        if granted == name && member == marty_config::alternate_login(name) {
            continue;
        }
        exec(
            conn,
            &format!("REVOKE {} FROM {}", ident(&granted), ident(&member)),
        )
        .await?;
        rec.change(format!("revoked membership of {member} in {granted}"));
    }
    Ok(())
}

async fn ensure_role_settings(
    conn: &mut PgConnection,
    name: &str,
    wanted: &[(&str, String)],
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    let current: Vec<String> = sqlx::query_scalar(
        "select unnest(s.setconfig) from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
         where r.rolname = $1 and s.setdatabase = 0",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading settings of {name}"))?;
    for (setting, value) in wanted {
        let entry = format!("{setting}={value}");
        if !current.contains(&entry) {
            exec(
                conn,
                &format!("ALTER ROLE {} SET {setting} = {value}", ident(name)),
            )
            .await?;
            rec.change(format!("set {setting} = {value}"));
        }
    }
    Ok(())
}

/// (grantee, privilege) pairs of an ACL, with `PUBLIC` for the public pseudo-role.
type Acl = Vec<(String, String)>;

async fn ensure_database(
    conn: &mut PgConnection,
    database: &str,
    owner: &str,
    connect_roles: &[&str],
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    let current_owner: Option<String> = sqlx::query_scalar(
        "select pg_get_userbyid(datdba)::text from pg_database where datname = $1",
    )
    .bind(database)
    .fetch_optional(&mut *conn)
    .await
    .context(|| format!("looking up database {database}"))?;
    match current_owner {
        None => {
            exec(
                conn,
                &format!("CREATE DATABASE {} OWNER {}", ident(database), ident(owner)),
            )
            .await?;
            rec.change(format!("created database owned by {owner}"));
        }
        Some(current) if current != owner => {
            exec(
                conn,
                &format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    ident(database),
                    ident(owner)
                ),
            )
            .await?;
            rec.change(format!("owner changed from {current} to {owner}"));
        }
        Some(_) => {}
    }
    let acl: Acl = sqlx::query_as(
        "select case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee)::text end, a.privilege_type
         from pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
         where d.datname = $1",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading the ACL of database {database}"))?;
    let db = ident(database);
    for (grantee, privilege) in &acl {
        let allowed = grantee == owner
            || (connect_roles.contains(&grantee.as_str()) && privilege == "CONNECT");
        if !allowed {
            let target = grantee_sql(grantee);
            exec(
                conn,
                &format!("REVOKE {privilege} ON DATABASE {db} FROM {target}"),
            )
            .await?;
            rec.change(format!("revoked {privilege} from {grantee}"));
        }
    }
    for role in connect_roles {
        if !acl.iter().any(|(g, p)| g == role && p == "CONNECT") {
            exec(
                conn,
                &format!("GRANT CONNECT ON DATABASE {db} TO {}", ident(role)),
            )
            .await?;
            rec.change(format!("granted CONNECT to {role}"));
        }
    }
    Ok(())
}

/// Marks the database as `service`'s on this server (see [`crate::startup`]): a service starts
/// only on a database whose mark names it and the server it is on, which only `setup` — after
/// the isolation guard accepted the placement — writes.
async fn ensure_marker(
    conn: &mut PgConnection,
    service: Service,
    database: &str,
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    let system_identifier = crate::isolation::server_identity(conn).await?;
    let wanted = crate::startup::marker(service, system_identifier);
    let current: Option<String> = sqlx::query_scalar(
        "select shobj_description(oid, 'pg_database') from pg_database where datname = $1",
    )
    .bind(database)
    .fetch_one(&mut *conn)
    .await
    .context(|| format!("reading the comment of database {database}"))?;
    if current.as_deref() != Some(wanted.as_str()) {
        exec(
            conn,
            &format!(
                "COMMENT ON DATABASE {} IS {}",
                ident(database),
                literal(&wanted)
            ),
        )
        .await?;
        rec.change(format!("marked as {service}'s database on this server"));
    }
    Ok(())
}

/// The public schema: owned by the database owner (directly or through `pg_database_owner`),
/// `CREATE` for nobody else — stated explicitly, since a database restored from PostgreSQL ≤ 14
/// keeps the old open ACL — and `USAGE` for the service's roles.
async fn ensure_public_schema(
    conn: &mut PgConnection,
    owner: &str,
    usage_roles: &[&str],
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    let schema_owner: String = sqlx::query_scalar(
        "select pg_get_userbyid(nspowner)::text from pg_namespace where nspname = 'public'",
    )
    .fetch_one(&mut *conn)
    .await
    .context(|| "reading the owner of schema public".into())?;
    if schema_owner != owner && schema_owner != "pg_database_owner" {
        exec(
            conn,
            &format!("ALTER SCHEMA public OWNER TO {}", ident(owner)),
        )
        .await?;
        rec.change(format!(
            "schema public: owner changed from {schema_owner} to {owner}"
        ));
    }
    let acl: Acl = sqlx::query_as(
        "select case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee)::text end, a.privilege_type
         from pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
         where n.nspname = 'public'",
    )
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading the ACL of schema public".into())?;
    for (grantee, privilege) in &acl {
        let is_owner = grantee == owner || grantee == "pg_database_owner";
        if privilege == "CREATE" && !is_owner {
            let target = grantee_sql(grantee);
            exec(
                conn,
                &format!("REVOKE CREATE ON SCHEMA public FROM {target}"),
            )
            .await?;
            rec.change(format!("schema public: revoked CREATE from {grantee}"));
        }
    }
    for role in usage_roles {
        if !acl.iter().any(|(g, p)| g == role && p == "USAGE") {
            exec(
                conn,
                &format!("GRANT USAGE ON SCHEMA public TO {}", ident(role)),
            )
            .await?;
            rec.change(format!("schema public: granted USAGE to {role}"));
        }
    }
    Ok(())
}

/// The privileges each role should get by default on `objtype` ('r' tables, 'S' sequences).
fn wanted_defaults<'a>(
    app: &'a str,
    readonly: &'a str,
) -> BTreeMap<(&'static str, &'a str), &'static [&'static str]> {
    BTreeMap::from([
        (("r", app), APP_TABLE_PRIVILEGES),
        (("r", readonly), READONLY_TABLE_PRIVILEGES),
        (("S", app), APP_SEQUENCE_PRIVILEGES),
        (("S", readonly), READONLY_SEQUENCE_PRIVILEGES),
    ])
}

fn object_kind(objtype: &str) -> &'static str {
    if objtype == "S" {
        "SEQUENCES"
    } else {
        "TABLES"
    }
}

async fn ensure_default_privileges(
    conn: &mut PgConnection,
    owner: &str,
    app: &str,
    readonly: &str,
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    let current = default_privileges(conn, owner).await?;
    let wanted = wanted_defaults(app, readonly);
    let prefix = format!(
        "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public",
        ident(owner)
    );
    for ((objtype, role), privileges) in &wanted {
        let missing: Vec<&str> = privileges
            .iter()
            .copied()
            .filter(|p| !current.contains(&(objtype.to_string(), role.to_string(), p.to_string())))
            .collect();
        if !missing.is_empty() {
            let kind = object_kind(objtype);
            exec(
                conn,
                &format!(
                    "{prefix} GRANT {} ON {kind} TO {}",
                    missing.join(", "),
                    ident(role)
                ),
            )
            .await?;
            rec.change(format!(
                "default privileges: granted {} on new {} of {owner} to {role}",
                missing.join(", "),
                kind.to_lowercase()
            ));
        }
    }
    // Grants beyond these are drift, revoked with the rest (`drift::database_drift`).
    Ok(())
}

/// The owner's default privileges in schema public as (objtype, grantee, privilege).
pub(crate) async fn default_privileges(
    conn: &mut PgConnection,
    owner: &str,
) -> Result<BTreeSet<(String, String, String)>, DbError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select d.defaclobjtype::text,
                case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee)::text end,
                a.privilege_type
         from pg_default_acl d, aclexplode(d.defaclacl) a
         where d.defaclrole = (select oid from pg_roles where rolname = $1)
           and d.defaclnamespace = 'public'::regnamespace",
    )
    .bind(owner)
    .fetch_all(&mut *conn)
    .await
    .context(|| format!("reading default privileges of {owner}"))?;
    Ok(rows.into_iter().collect())
}

/// Tables and sequences that exist already (created before the default privileges, or
/// restored) get the same privileges; the migrations table is read-only for the app role.
/// Explicit grants on the relations of schema public as (relation, kind, grantee, privilege),
/// `PUBLIC` for the public pseudo-role. Owners' own entries are included.
pub(crate) async fn relation_grants(
    conn: &mut PgConnection,
) -> Result<Vec<(String, String, String, String)>, DbError> {
    sqlx::query_as(
        "select c.relname::text, c.relkind::text,
                case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee)::text end,
                a.privilege_type
         from pg_class c, aclexplode(c.relacl) a
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'S')
         order by 1, 3, 4",
    )
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading grants on tables and sequences".into())
}

/// Privileges a grantee may hold on a relation of its service's database; anything else is
/// drift (a grant to PUBLIC or to a foreign role, readonly given more than SELECT).
pub(crate) fn relation_grant_allowed(
    owner: &str,
    app: &str,
    readonly: &str,
    relation: &str,
    kind: &str,
    grantee: &str,
    privilege: &str,
) -> bool {
    if grantee == owner {
        return true;
    }
    if grantee == readonly {
        return privilege == "SELECT";
    }
    if grantee == app {
        return match kind {
            "S" => matches!(privilege, "SELECT" | "USAGE"),
            _ if is_platform_table(relation) => privilege == "SELECT",
            _ => matches!(privilege, "SELECT" | "INSERT" | "UPDATE" | "DELETE"),
        };
    }
    false
}

/// Revokes grants on tables and sequences that the role model does not allow.
async fn revoke_stray_relation_grants(
    conn: &mut PgConnection,
    owner: &str,
    app: &str,
    readonly: &str,
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    for (relation, kind, grantee, privilege) in relation_grants(conn).await? {
        if relation_grant_allowed(owner, app, readonly, &relation, &kind, &grantee, &privilege) {
            continue;
        }
        let object = if kind == "S" { "SEQUENCE" } else { "TABLE" };
        let target = grantee_sql(&grantee);
        exec(
            conn,
            &format!(
                "REVOKE {privilege} ON {object} public.{} FROM {target}",
                ident(&relation)
            ),
        )
        .await?;
        rec.change(format!(
            "{} {relation}: revoked {privilege} from {grantee}",
            object.to_lowercase()
        ));
    }
    Ok(())
}

async fn ensure_existing_relations(
    conn: &mut PgConnection,
    app: &str,
    readonly: &str,
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    #[derive(sqlx::FromRow)]
    struct Relation {
        name: String,
        kind: String,
        app_select: bool,
        app_insert: bool,
        app_update: bool,
        app_delete: bool,
        readonly_select: bool,
        readonly_write: bool,
    }
    let rows: Vec<Relation> = sqlx::query_as(
        "select c.relname::text as name, c.relkind::text as kind,
                has_table_privilege($1, c.oid, 'SELECT') as app_select,
                has_table_privilege($1, c.oid, 'INSERT') as app_insert,
                has_table_privilege($1, c.oid, 'UPDATE') as app_update,
                has_table_privilege($1, c.oid, 'DELETE') as app_delete,
                has_table_privilege($2, c.oid, 'SELECT') as readonly_select,
                has_table_privilege($2, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') as readonly_write
         from pg_class c
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'S')
         order by c.relname",
    )
    .bind(app)
    .bind(readonly)
    .fetch_all(&mut *conn)
    .await
    .context(|| "reading privileges on existing tables".into())?;
    for Relation {
        name,
        kind,
        app_select: a_sel,
        app_insert: a_ins,
        app_update: a_upd,
        app_delete: a_del,
        readonly_select: r_sel,
        readonly_write: r_write,
    } in rows
    {
        let table = format!("public.{}", ident(&name));
        if kind == "S" {
            // Sequences: the table-privilege probe above answers for SELECT/UPDATE only.
            let usage: bool = sqlx::query_scalar("select has_sequence_privilege($1, $2, 'USAGE')")
                .bind(app)
                .bind(format!("public.{}", ident(&name)))
                .fetch_one(&mut *conn)
                .await
                .context(|| format!("reading privileges on sequence {name}"))?;
            if !usage || !a_sel {
                exec(
                    conn,
                    &format!("GRANT USAGE, SELECT ON SEQUENCE {table} TO {}", ident(app)),
                )
                .await?;
                rec.change(format!("sequence {name}: granted USAGE, SELECT to {app}"));
            }
            if !r_sel {
                exec(
                    conn,
                    &format!("GRANT SELECT ON SEQUENCE {table} TO {}", ident(readonly)),
                )
                .await?;
                rec.change(format!("sequence {name}: granted SELECT to {readonly}"));
            }
            continue;
        }
        if is_platform_table(&name) {
            if a_ins || a_upd || a_del {
                exec(
                    conn,
                    &format!(
                        "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {table} FROM {}",
                        ident(app)
                    ),
                )
                .await?;
                rec.change(format!("table {name}: revoked write privileges from {app}"));
            }
        } else if !(a_sel && a_ins && a_upd && a_del) {
            exec(
                conn,
                &format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {}",
                    ident(app)
                ),
            )
            .await?;
            rec.change(format!(
                "table {name}: granted SELECT, INSERT, UPDATE, DELETE to {app}"
            ));
        }
        if !r_sel {
            exec(
                conn,
                &format!("GRANT SELECT ON {table} TO {}", ident(readonly)),
            )
            .await?;
            rec.change(format!("table {name}: granted SELECT to {readonly}"));
        }
        if r_write {
            exec(
                conn,
                &format!(
                    "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {table} FROM {}",
                    ident(readonly)
                ),
            )
            .await?;
            rec.change(format!(
                "table {name}: revoked write privileges from {readonly}"
            ));
        }
    }
    Ok(())
}

/// Creates the one-row probe table as `owner` (or the connected role) if it is missing.
async fn ensure_probe_table(
    conn: &mut PgConnection,
    owner: Option<&str>,
    rec: &mut Recorder<'_>,
) -> Result<(), DbError> {
    let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(format!("public.{PROBE_TABLE}"))
        .fetch_one(&mut *conn)
        .await
        .context(|| "looking for the probe table".into())?;
    if exists {
        return Ok(());
    }
    let mut tx = conn
        .begin()
        .await
        .context(|| "starting a transaction".into())?;
    if let Some(owner) = owner {
        exec(&mut tx, &format!("SET LOCAL ROLE {}", ident(owner))).await?;
    }
    exec(
        &mut tx,
        &format!(
            "CREATE TABLE public.{PROBE_TABLE} (id integer primary key, note text not null);
             COMMENT ON TABLE public.{PROBE_TABLE} IS 'one row: marty db verify proves read and write privileges on it';
             INSERT INTO public.{PROBE_TABLE} VALUES (1, 'isolation probe')"
        ),
    )
    .await?;
    tx.commit()
        .await
        .context(|| "committing the probe table".into())?;
    rec.change(format!("created probe table {PROBE_TABLE}"));
    Ok(())
}
