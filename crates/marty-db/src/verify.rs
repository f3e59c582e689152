//! `marty db verify`: the isolation proof (DESIGN §3.5).
//!
//! Proof by acting: every login role (4 services × 3) logs in with its real password to every
//! database (the 4 services and the legacy `marty_dev`) and attempts to connect, read, write,
//! create a table, create a temporary table and `SET ROLE` to another service's role. Each
//! attempt runs in a transaction that is rolled back, so verify changes nothing. Outcomes are
//! compared with the declared policy; then a catalog audit lists PUBLIC privileges, public
//! schema ACLs, dangerous role attributes, memberships and default privileges, and the drift
//! of [`crate::drift`] (ownership, column grants, other schemas, SECURITY DEFINER routines,
//! default privileges anywhere, members from outside, settings, password expiry).
//!
//! It always finishes: every session it opens has a lock and a statement timeout, and the
//! whole run has a deadline. What could not be proven in time is a deviation saying so.
//! Deviations are reported one cause per line, with what follows from it grouped beneath.

use std::fmt::Write as _;

use futures::StreamExt;
use marty_config::{Config, Role, Service};
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::connect::{ConnectFailure, ConnectTarget, describe_connect_error, sqlstate};
use crate::drift;
use crate::isolation::{Probe, ensure_isolated};
use crate::provision::{PROBE_TABLE, default_privileges, relation_grant_allowed, relation_grants};
use crate::sql::ident;
use crate::{DbError, SqlContext};

/// How long one probe statement may wait for a lock before it is reported as blocked.
const PROBE_LOCK_TIMEOUT_MS: u64 = 2_000;
/// How long one probe statement may run: the probes are trivial, anything longer is stuck.
const PROBE_STATEMENT_TIMEOUT_MS: u64 = 5_000;

/// Session settings of every connection `verify` opens: it must never wait on a lock that
/// another session holds.
fn probe_settings() -> [(&'static str, String); 3] {
    [
        ("lock_timeout", PROBE_LOCK_TIMEOUT_MS.to_string()),
        ("statement_timeout", PROBE_STATEMENT_TIMEOUT_MS.to_string()),
        // Probe statements name the probe table with its schema and call nothing else.
        (
            "search_path",
            crate::connect::CATALOG_SEARCH_PATH.to_owned(),
        ),
    ]
}

/// What a role attempts in a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Connect,
    Read,
    Write,
    Ddl,
    TempTable,
    SetRole,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Connect,
        Action::Read,
        Action::Write,
        Action::Ddl,
        Action::TempTable,
        Action::SetRole,
    ];

    /// The letter shown in the matrix when the action succeeded.
    fn letter(self) -> char {
        match self {
            Action::Connect => 'C',
            Action::Read => 'R',
            Action::Write => 'W',
            Action::Ddl => 'D',
            Action::TempTable => 'T',
            Action::SetRole => 'S',
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Action::Connect => "connect",
            Action::Read => "read",
            Action::Write => "write",
            Action::Ddl => "create table",
            Action::TempTable => "create temp table",
            Action::SetRole => "SET ROLE to another service's role",
        }
    }
}

/// What happened when a role attempted an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "message", rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    /// PostgreSQL refused it for lack of privilege.
    Denied,
    /// Not attempted because the connection was refused.
    NotTried,
    /// Could not be decided: another session holds a lock, or the run's deadline passed.
    Blocked(String),
    /// Failed for another reason (wrong password, missing table, network): always a deviation.
    Error(String),
}

impl Outcome {
    fn symbol(&self, action: Action) -> char {
        match self {
            Outcome::Allowed => action.letter(),
            Outcome::Denied => '.',
            Outcome::NotTried => '-',
            Outcome::Blocked(_) => 'B',
            Outcome::Error(_) => 'E',
        }
    }
}

/// One role × database cell of the matrix.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub role: String,
    pub role_service: Service,
    pub role_kind: Role,
    pub database: String,
    /// The service owning the database; `None` for the legacy database.
    pub database_service: Option<Service>,
    pub actual: Vec<(Action, Outcome)>,
    pub expected: Vec<(Action, Outcome)>,
    pub ok: bool,
}

impl Cell {
    fn pattern(outcomes: &[(Action, Outcome)]) -> String {
        outcomes.iter().map(|(a, o)| o.symbol(*a)).collect()
    }
}

/// One catalog audit check.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub area: String,
    pub subject: String,
    pub expected: String,
    pub actual: String,
    pub ok: bool,
    /// The check this finding belongs to: a check that finds several deviations reports one
    /// finding for each, and counts once.
    pub check: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyOutcome {
    Verified,
    Violated,
    NotProven,
}

/// One cause of deviations, and what follows from it.
#[derive(Clone, Debug, Serialize)]
pub struct Cause {
    pub cause: String,
    pub consequences: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub databases: Vec<String>,
    pub roles: Vec<String>,
    pub cells: Vec<Cell>,
    pub audit: Vec<Finding>,
    /// Number of cells and audit checks that deviate from the policy.
    pub deviations: usize,
    /// The deviations grouped by cause: one entry per thing an operator must fix.
    pub causes: Vec<Cause>,
    /// verified, violated (a deviation was proven), or not_proven (only what could not be
    /// decided: locks, the deadline, databases that could not be audited).
    pub outcome: VerifyOutcome,
    /// When the proof was made (RFC 3339), and how long it took.
    pub finished_at: String,
    pub duration_ms: u128,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.deviations == 0
    }

    /// The report as Prometheus text, for node_exporter's textfile collector (or any scraper
    /// of a file): a periodic `marty db verify --metrics-file` keeps it current, and the alert
    /// fires when it says "not verified" or when it grows old.
    pub fn to_prometheus(&self) -> String {
        let finished = time::OffsetDateTime::parse(
            &self.finished_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.unix_timestamp())
        .unwrap_or(0);
        let outcome = match self.outcome {
            VerifyOutcome::Verified => "verified",
            VerifyOutcome::Violated => "violated",
            VerifyOutcome::NotProven => "not_proven",
        };
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, labels: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}\n"
            ));
        };
        gauge(
            "marty_isolation_verified",
            "1 when the last `marty db verify` proved every cell and audit check as the policy declares.",
            "",
            u8::from(self.passed() && self.outcome == VerifyOutcome::Verified).to_string(),
        );
        gauge(
            "marty_isolation_deviations",
            "Cells and audit checks of the last verify run that deviate from the policy.",
            &format!("{{outcome=\"{outcome}\"}}"),
            self.deviations.to_string(),
        );
        gauge(
            "marty_isolation_last_run_timestamp_seconds",
            "When the last verify run finished (Unix time).",
            "",
            finished.to_string(),
        );
        gauge(
            "marty_isolation_run_duration_seconds",
            "How long the last verify run took.",
            "",
            format!("{:.3}", self.duration_ms as f64 / 1000.0),
        );
        out
    }
}

/// The declared policy of DESIGN §3.
pub fn expected(
    role_service: Service,
    role: Role,
    database_service: Option<Service>,
) -> Vec<(Action, Outcome)> {
    let own = database_service == Some(role_service);
    Action::ALL
        .into_iter()
        .map(|action| {
            let outcome = if !own {
                if action == Action::Connect {
                    Outcome::Denied
                } else {
                    Outcome::NotTried
                }
            } else {
                let allowed = match action {
                    Action::Connect | Action::Read => true,
                    Action::Write => matches!(role, Role::Owner | Role::App),
                    Action::Ddl | Action::TempTable => role == Role::Owner,
                    Action::SetRole => false,
                };
                if allowed {
                    Outcome::Allowed
                } else {
                    Outcome::Denied
                }
            };
            (action, outcome)
        })
        .collect()
}

/// Runs the matrix with up to `concurrency` cells at once, then the audit, all within
/// `deadline` (cells not finished by then are reported as not proven).
pub async fn verify(
    config: &Config,
    concurrency: usize,
    deadline: std::time::Duration,
) -> Result<VerifyReport, DbError> {
    ensure_isolated(config, Probe::Admin).await?;
    let deadline_at = tokio::time::Instant::now() + deadline;
    // (database name, owning service, where it is)
    let admin = ConnectTarget::admin(config.admin()).with_session_settings(&probe_settings());
    let mut databases: Vec<(String, Option<Service>, ConnectTarget)> = config
        .databases()
        .map(|db| {
            let target = admin
                .with_database(&db.database)
                .at(&db.host, db.port, db.sslmode);
            (db.database.clone(), Some(db.service), target)
        })
        .collect();
    let legacy = config.default_database();
    databases.push((legacy.database.clone(), None, admin.for_legacy(legacy)));

    let mut jobs = Vec::new();
    // Database-major order: consecutive cells use different roles, so no role nears its
    // connection limit however many cells run at once.
    for (database, database_service, location) in &databases {
        for service in Service::ALL {
            let db = config.database(service);
            for role in Role::ALL {
                let own = ConnectTarget::role(db, role)?.with_session_settings(&probe_settings());
                let target =
                    own.with_database(database)
                        .at(&location.host, location.port, location.sslmode);
                let foreign_role = next_service(service).role_name(Role::App);
                let expected = expected(service, role, *database_service);
                let cell = Cell {
                    role: db.role_name(role),
                    role_service: service,
                    role_kind: role,
                    database: database.clone(),
                    database_service: *database_service,
                    actual: Vec::new(),
                    expected,
                    ok: false,
                };
                jobs.push((cell, target, foreign_role));
            }
        }
    }
    let started = std::time::Instant::now();
    let mut cells: Vec<(usize, Cell)> = futures::stream::iter(jobs.into_iter().enumerate().map(
        |(i, (mut cell, target, foreign_role))| async move {
            cell.actual =
                match tokio::time::timeout_at(deadline_at, attempt(&target, &foreign_role)).await {
                    Ok(outcomes) => outcomes,
                    Err(_) => Action::ALL
                        .iter()
                        .map(|a| {
                            (
                                *a,
                                Outcome::Blocked(format!(
                                    "not finished within the run's deadline of {}s",
                                    deadline.as_secs()
                                )),
                            )
                        })
                        .collect(),
                };
            cell.ok = cell.actual == cell.expected;
            (i, cell)
        },
    ))
    .buffer_unordered(concurrency.max(1))
    .collect()
    .await;
    cells.sort_by_key(|(i, _)| *i);
    let cells: Vec<Cell> = cells.into_iter().map(|(_, c)| c).collect();

    let matrix_time = started.elapsed();
    let audit = audit(config, &databases, deadline_at).await;
    tracing::info!(?matrix_time, audit_time = ?(started.elapsed() - matrix_time), concurrency, "verify finished");
    let deviations =
        cells.iter().filter(|c| !c.ok).count() + audit.iter().filter(|f| !f.ok).count();
    let causes = causes(&cells, &audit);
    let violated = cells
        .iter()
        .any(|c| !c.ok && !Deviation::of(c).is_blocked())
        || audit.iter().any(|f| !f.ok && f.area != "audit");
    let outcome = if deviations == 0 {
        VerifyOutcome::Verified
    } else if violated {
        VerifyOutcome::Violated
    } else {
        VerifyOutcome::NotProven
    };
    Ok(VerifyReport {
        outcome,
        databases: databases.iter().map(|(d, _, _)| d.clone()).collect(),
        roles: Service::ALL
            .iter()
            .flat_map(|s| Role::ALL.map(|r| s.role_name(r)))
            .collect(),
        cells,
        audit,
        deviations,
        causes,
        finished_at: time_now_rfc3339(),
        duration_ms: started.elapsed().as_millis(),
    })
}

/// The service whose role a cell tries to `SET ROLE` to.
fn next_service(service: Service) -> Service {
    let i = Service::ALL.iter().position(|s| *s == service).unwrap_or(0);
    Service::ALL[(i + 1) % Service::ALL.len()]
}

/// Insufficient privilege (42501) or rejected by pg_hba (28000): PostgreSQL said no.
fn is_denial(e: &sqlx::Error) -> bool {
    matches!(sqlstate(e).as_deref(), Some("42501") | Some("28000"))
}

/// A lock held by another session (55P03), or a statement cancelled by its timeout (57014).
fn is_blocked(e: &sqlx::Error) -> bool {
    matches!(sqlstate(e).as_deref(), Some("55P03") | Some("57014"))
}

fn time_now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn attempt(target: &ConnectTarget, foreign_role: &str) -> Vec<(Action, Outcome)> {
    let rest = |outcome: Outcome| -> Vec<(Action, Outcome)> {
        let mut v = vec![(Action::Connect, outcome)];
        v.extend(Action::ALL[1..].iter().map(|a| (*a, Outcome::NotTried)));
        v
    };
    let mut conn = match target.try_connect().await {
        Ok(conn) => conn,
        Err(ConnectFailure::Driver(e)) if is_denial(&e) => return rest(Outcome::Denied),
        // Starting a session reads the catalogs: a lock on them shows here.
        Err(ConnectFailure::Driver(e)) if is_blocked(&e) => {
            return rest(Outcome::Blocked(format!(
                "the login waited for a lock held by another session ({})",
                describe_connect_error(&e)
            )));
        }
        Err(ConnectFailure::Driver(e)) => return rest(Outcome::Error(describe_connect_error(&e))),
        Err(ConnectFailure::Timeout) => return rest(Outcome::Error("connect timeout".into())),
    };
    let mut out = vec![(Action::Connect, Outcome::Allowed)];
    for action in &Action::ALL[1..] {
        let sql = match action {
            Action::Read => format!("select count(*) from public.{PROBE_TABLE}"),
            Action::Write => format!(
                "insert into public.{PROBE_TABLE} (id, note) values (-pg_backend_pid(), 'marty db verify')"
            ),
            Action::Ddl => "create table public.marty_verify_ddl_probe (id integer)".to_owned(),
            Action::TempTable => {
                "create temp table marty_verify_temp_probe (id integer)".to_owned()
            }
            Action::SetRole => format!("set role {}", ident(foreign_role)),
            Action::Connect => unreachable!("handled above"),
        };
        out.push((*action, in_rolled_back_transaction(&mut conn, &sql).await));
    }
    conn.close().await.ok();
    out
}

async fn in_rolled_back_transaction(conn: &mut PgConnection, sql: &str) -> Outcome {
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => return Outcome::Error(describe_connect_error(&e)),
    };
    let result = sqlx::raw_sql(sql).execute(&mut *tx).await;
    let rollback = tx.rollback().await;
    match (result, rollback) {
        (Ok(_), Ok(())) => Outcome::Allowed,
        (Err(e), _) if is_denial(&e) => Outcome::Denied,
        (Err(e), _) if is_blocked(&e) => Outcome::Blocked(format!(
            "waited for a lock held by another session ({})",
            describe_connect_error(&e)
        )),
        (Err(e), _) => Outcome::Error(describe_connect_error(&e)),
        (Ok(_), Err(e)) => {
            Outcome::Error(format!("rollback failed: {}", describe_connect_error(&e)))
        }
    }
}

#[derive(sqlx::FromRow)]
struct RoleRow {
    rolsuper: bool,
    rolcreatedb: bool,
    rolcreaterole: bool,
    rolbypassrls: bool,
    rolreplication: bool,
    rolconnlimit: i32,
    settings: Vec<String>,
}

fn finding(area: &str, subject: &str, expected: &str, actual: Vec<String>) -> Finding {
    let actual = if actual.is_empty() {
        "none".to_owned()
    } else {
        actual.join(", ")
    };
    Finding {
        area: area.to_owned(),
        subject: subject.to_owned(),
        expected: expected.to_owned(),
        ok: actual == expected,
        actual,
        check: format!("{subject}: {area}"),
    }
}

/// The catalog audit of every database and of the roles, each part within the deadline: a
/// database that cannot be audited is a failed check of its own, and the others still count.
async fn audit(
    config: &Config,
    databases: &[(String, Option<Service>, ConnectTarget)],
    deadline_at: tokio::time::Instant,
) -> Vec<Finding> {
    let not_audited = |subject: String, why: String| Finding {
        area: "audit".into(),
        subject: subject.clone(),
        expected: "audited".into(),
        actual: why,
        ok: false,
        check: format!("{subject}: audit"),
    };
    let mut findings = Vec::new();
    for (database, service, target) in databases {
        let subject = format!("database {database}");
        match tokio::time::timeout_at(
            deadline_at,
            audit_database(config, database, *service, target),
        )
        .await
        {
            Ok(Ok(f)) => findings.extend(f),
            Ok(Err(e)) => findings.push(not_audited(subject, format!("could not be audited: {e}"))),
            Err(_) => findings.push(not_audited(
                subject,
                "not audited: the run's deadline passed".into(),
            )),
        }
    }
    match tokio::time::timeout_at(deadline_at, audit_roles(config)).await {
        Ok(Ok(f)) => findings.extend(f),
        Ok(Err(e)) => findings.push(not_audited(
            "service roles".into(),
            format!("could not be audited: {e}"),
        )),
        Err(_) => findings.push(not_audited(
            "service roles".into(),
            "not audited: the run's deadline passed".into(),
        )),
    }
    findings
}

async fn audit_database(
    config: &Config,
    database: &str,
    service: Option<Service>,
    target: &ConnectTarget,
) -> Result<Vec<Finding>, DbError> {
    let mut findings = Vec::new();
    let admin_user = config.admin().user.clone();
    {
        let service = &service;
        let mut conn = target.connect().await?;
        let owner = service
            .map(|s| s.role_name(Role::Owner))
            .unwrap_or_else(|| admin_user.clone());
        let (db_owner, acl): (String, Vec<String>) = {
            let db_owner: String = sqlx::query_scalar("select pg_get_userbyid(datdba)::text from pg_database where datname = current_database()")
                .fetch_one(&mut conn)
                .await
                .context(|| format!("reading the owner of {database}"))?;
            let acl: Vec<(String, String)> = sqlx::query_as(
                "select case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee)::text end, a.privilege_type
                 from pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                 where d.datname = current_database() order by 1, 2",
            )
            .fetch_all(&mut conn)
            .await
            .context(|| format!("reading the ACL of {database}"))?;
            (
                db_owner,
                acl.into_iter()
                    .filter(|(g, _)| *g != owner)
                    .map(|(g, p)| format!("{p} to {g}"))
                    .collect(),
            )
        };
        let subject = format!("database {database}");
        findings.push(finding("owner", &subject, &owner, vec![db_owner]));
        let public: Vec<String> = acl
            .iter()
            .filter(|g| g.ends_with(" to PUBLIC"))
            .map(|g| g.trim_end_matches(" to PUBLIC").to_owned())
            .collect();
        findings.push(finding("PUBLIC privileges", &subject, "none", public));
        let granted: Vec<String> = acl
            .iter()
            .filter(|g| !g.ends_with(" to PUBLIC"))
            .cloned()
            .collect();
        let expected_grants = match service {
            Some(s) => format!(
                "CONNECT to {}, CONNECT to {}",
                s.role_name(Role::App),
                s.role_name(Role::Readonly)
            ),
            None => "none".to_owned(),
        };
        findings.push(finding("grants", &subject, &expected_grants, granted));

        let schema_create: Vec<String> = sqlx::query_scalar(
            "select case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee)::text end
             from pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
             where n.nspname = 'public' and a.privilege_type = 'CREATE' order by 1",
        )
        .fetch_all(&mut conn)
        .await
        .context(|| format!("reading the ACL of schema public in {database}"))?;
        let others: Vec<String> = schema_create
            .into_iter()
            .filter(|g| *g != owner && g != "pg_database_owner")
            .collect();
        findings.push(finding(
            "schema public: CREATE beyond the owner",
            &subject,
            "none",
            others,
        ));

        if let Some(service) = service {
            let (app, readonly) = (
                service.role_name(Role::App),
                service.role_name(Role::Readonly),
            );
            let stray: Vec<String> = relation_grants(&mut conn)
                .await?
                .into_iter()
                .filter(|(rel, kind, grantee, privilege)| {
                    !relation_grant_allowed(&owner, &app, &readonly, rel, kind, grantee, privilege)
                })
                .map(|(rel, _, grantee, privilege)| format!("{privilege} on {rel} to {grantee}"))
                .collect();
            findings.push(finding(
                "grants on tables and sequences beyond the role model",
                &subject,
                "none",
                stray,
            ));
            let current = default_privileges(&mut conn, &owner).await?;
            for (objtype, kind, role, wanted) in [
                ("r", "tables", Role::App, "DELETE, INSERT, SELECT, UPDATE"),
                ("r", "tables", Role::Readonly, "SELECT"),
                ("S", "sequences", Role::App, "SELECT, USAGE"),
                ("S", "sequences", Role::Readonly, "SELECT"),
            ] {
                let name = service.role_name(role);
                let have: Vec<String> = current
                    .iter()
                    .filter(|(o, g, _)| o == objtype && *g == name)
                    .map(|(_, _, p)| p.clone())
                    .collect();
                findings.push(finding(
                    "default privileges",
                    &format!("{subject}: new {kind} of {owner} for {name}"),
                    wanted,
                    have,
                ));
            }
            let drifts = drift::database_drift(&mut conn, *service, database).await?;
            findings.extend(drift_findings(
                &subject,
                DATABASE_DRIFT_AREAS,
                drifts,
                |_| subject.clone(),
            ));
        }
        conn.close().await.ok();
    }
    Ok(findings)
}

async fn audit_roles(config: &Config) -> Result<Vec<Finding>, DbError> {
    let mut findings = Vec::new();
    let admin_user = config.admin().user.clone();
    let mut conn = ConnectTarget::admin(config.admin())
        .with_session_settings(&probe_settings())
        .connect()
        .await?;
    // With the alternate logins of password rotation: nobody may be a member of one either.
    let roles: Vec<String> = Service::ALL
        .iter()
        .flat_map(|s| Role::ALL.map(|r| s.role_name(r)))
        .flat_map(|name| [marty_config::alternate_login(&name), name])
        .collect();
    let drifts = drift::role_drift(&mut conn, &roles, &admin_user).await?;
    findings.extend(drift_findings(
        "service roles",
        ROLE_DRIFT_AREAS,
        drifts,
        |d: &drift::Drift| format!("role {}", d.scope),
    ));
    let drifts = drift::cluster_drift(&mut conn).await?;
    findings.extend(drift_findings(
        "server",
        CLUSTER_DRIFT_AREAS,
        drifts,
        |_| "server".to_owned(),
    ));
    let policy = config.role_policy();
    for service in Service::ALL {
        for role in Role::ALL {
            let name = service.role_name(role);
            let row: Option<RoleRow> = sqlx::query_as(
                "select r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolbypassrls, r.rolreplication, r.rolconnlimit,
                        coalesce((select s.setconfig from pg_db_role_setting s where s.setrole = r.oid and s.setdatabase = 0), '{}') as settings
                 from pg_roles r where r.rolname = $1",
            )
            .bind(&name)
            .fetch_optional(&mut conn)
            .await
            .context(|| format!("reading role {name}"))?;
            let subject = format!("role {name}");
            let Some(RoleRow {
                rolsuper: sup,
                rolcreatedb: cdb,
                rolcreaterole: crole,
                rolbypassrls: bypass,
                rolreplication: repl,
                rolconnlimit: limit,
                settings,
            }) = row
            else {
                findings.push(finding(
                    "role exists",
                    &subject,
                    "yes",
                    vec!["no (run marty db setup)".into()],
                ));
                continue;
            };
            let attrs: Vec<String> = [
                (sup, "SUPERUSER"),
                (cdb, "CREATEDB"),
                (crole, "CREATEROLE"),
                (bypass, "BYPASSRLS"),
                (repl, "REPLICATION"),
            ]
            .into_iter()
            .filter(|(has, _)| *has)
            .map(|(_, n)| n.to_owned())
            .collect();
            findings.push(finding("dangerous attributes", &subject, "none", attrs));
            let wanted_limit = policy.connection_limits.get(&role).copied().unwrap_or(-1);
            findings.push(finding(
                "connection limit",
                &subject,
                &wanted_limit.to_string(),
                vec![limit.to_string()],
            ));
            if role == Role::App {
                let timeouts: Vec<String> = settings
                    .into_iter()
                    .filter(|s| {
                        s.starts_with("statement_timeout=")
                            || s.starts_with("idle_in_transaction_session_timeout=")
                    })
                    .collect();
                let wanted = format!(
                    "idle_in_transaction_session_timeout={}, statement_timeout={}",
                    policy.app_idle_in_transaction_timeout.as_millis(),
                    policy.app_statement_timeout.as_millis()
                );
                let mut sorted = timeouts;
                sorted.sort();
                findings.push(finding("timeouts", &subject, &wanted, sorted));
            }
        }
    }
    let memberships: Vec<(String, String)> = sqlx::query_as(
        "select m.rolname::text, r.rolname::text from pg_auth_members am
         join pg_roles r on r.oid = am.roleid join pg_roles m on m.oid = am.member
         where m.rolname like 'marty\\_%' or r.rolname like 'marty\\_%' order by 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .context(|| "reading role memberships".into())?;
    let bad: Vec<String> = memberships
        .into_iter()
        // An administrator may be a member of an owner role to manage it; a service role may be
        // a member of nothing.
        .filter(|(member, role)| {
            Service::parse_role_name(member).is_some()
                // A role's alternate login (password rotation) belongs in that role only.
                || (member.ends_with("_alt")
                    && Service::parse_role_name(member.trim_end_matches("_alt")).is_some()
                    && *member != marty_config::alternate_login(role))
        })
        .map(|(member, role)| format!("{member} in {role}"))
        .collect();
    // Each membership is its own cause (one REVOKE each).
    if bad.is_empty() {
        findings.push(finding("memberships", "service roles", "none", bad));
    } else {
        findings.extend(
            bad.into_iter()
                .map(|m| finding("memberships", "service roles", "none", vec![m])),
        );
    }
    conn.close().await.ok();
    Ok(findings)
}

const DATABASE_DRIFT_AREAS: &[&str] = &[
    "event triggers",
    "database settings",
    "template flag",
    "routines named like the catalogs'",
    "logical replication",
    "large objects",
    "object ownership",
    "owner privileges",
    "column grants",
    "schema privileges",
    "SECURITY DEFINER routines",
    "default privileges",
];
const ROLE_DRIFT_AREAS: &[&str] = &[
    "members of service roles",
    "role settings",
    "password expiry",
];
const CLUSTER_DRIFT_AREAS: &[&str] = &["settings of every role"];

/// One failed finding per drift, and one passed finding per area without drift (so that the
/// audit shows what was checked).
fn drift_findings(
    subject: &str,
    areas: &[&str],
    drifts: Vec<drift::Drift>,
    subject_of: impl Fn(&drift::Drift) -> String,
) -> Vec<Finding> {
    let mut out: Vec<Finding> = areas
        .iter()
        .filter(|a| !drifts.iter().any(|d| d.area == **a))
        .map(|a| finding(a, subject, "none", Vec::new()))
        .collect();
    out.extend(drifts.iter().map(|d| Finding {
        area: d.area.to_owned(),
        subject: subject_of(d),
        expected: "none".into(),
        actual: d.problem.clone(),
        ok: false,
        check: format!("{subject}: {}", d.area),
    }));
    out
}

/// The first way a cell deviates, in words; what follows from it is folded in (a role that
/// may connect where it should be refused then also reads — that is one cause).
fn cell_deviation(c: &Cell) -> String {
    let differing: Vec<(&Action, &Outcome, &Outcome)> = c
        .actual
        .iter()
        .zip(&c.expected)
        .filter(|((_, a), (_, e))| a != e)
        .map(|((action, a), (_, e))| (action, a, e))
        .collect();
    match differing.first() {
        // A login that fails fails alike on every database, whatever was declared there.
        Some((Action::Connect, Outcome::Error(message), _)) => format!("cannot log in: {message}"),
        Some((Action::Connect, Outcome::Blocked(message), _)) => format!("not proven: {message}"),
        Some((Action::Connect, Outcome::Allowed, Outcome::Denied)) => {
            let then: Vec<&str> = c
                .actual
                .iter()
                .skip(1)
                .filter(|(_, o)| *o == Outcome::Allowed)
                .map(|(a, _)| a.describe())
                .collect();
            if then.is_empty() {
                "can connect, declared refused".to_owned()
            } else {
                format!(
                    "can connect, declared refused (and then {})",
                    then.join(", ")
                )
            }
        }
        Some((Action::Connect, actual, expected)) => {
            format!(
                "connect {}, declared {}",
                describe(actual),
                describe(expected)
            )
        }
        _ => differing
            .iter()
            .map(|(action, actual, expected)| {
                format!(
                    "{} {}, declared {}",
                    action.describe(),
                    describe(actual),
                    describe(expected)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Deviations grouped by cause: every failed audit check is a cause; cells that deviate alike
/// on one database are one consequence, placed under the audit check that explains them (one
/// on that database, or one naming their roles) or standing as a cause of their own.
fn causes(cells: &[Cell], audit: &[Finding]) -> Vec<Cause> {
    let failed: Vec<&Finding> = audit.iter().filter(|f| !f.ok).collect();
    let mut causes: Vec<Cause> = failed
        .iter()
        .map(|f| Cause {
            cause: describe_finding(f),
            consequences: Vec::new(),
        })
        .collect();
    // Cells that deviate alike: first per database, then databases with the same roles and
    // the same deviation merge (a wrong password fails a role alike everywhere).
    let mut groups: Vec<(Deviation, Vec<String>, Vec<String>)> = Vec::new();
    for c in cells.iter().filter(|c| !c.ok) {
        let deviation = Deviation::of(c);
        match groups.iter_mut().find(|(d, _, dbs)| {
            *d == deviation && dbs.as_slice() == std::slice::from_ref(&c.database)
        }) {
            Some((_, roles, _)) => roles.push(c.role.clone()),
            None => groups.push((deviation, vec![c.role.clone()], vec![c.database.clone()])),
        }
    }
    let mut merged: Vec<(Deviation, Vec<String>, Vec<String>)> = Vec::new();
    for (deviation, roles, databases) in groups {
        match merged
            .iter_mut()
            .find(|(d, r, _)| *d == deviation && *r == roles)
        {
            Some((_, _, dbs)) => dbs.extend(databases),
            None => merged.push((deviation, roles, databases)),
        }
    }
    for (deviation, roles, databases) in merged {
        let who = if roles.len() == 1 {
            roles[0].clone()
        } else {
            format!("{} roles ({})", roles.len(), roles.join(", "))
        };
        let whereat = if databases.len() == 1 {
            databases[0].clone()
        } else {
            format!("{} databases ({})", databases.len(), databases.join(", "))
        };
        let line = format!("{who} on {whereat}: {}", deviation.text);
        let on_database = |f: &Finding| {
            databases
                .iter()
                .any(|d| f.subject.starts_with(&format!("database {d}")))
        };
        let names_role = |f: &Finding| {
            roles.iter().any(|r| {
                f.subject == format!("role {r}")
                    || (f.area.contains("member") && f.actual.contains(r.as_str()))
            })
        };
        // The audit check that explains this kind of deviation, on these databases or about
        // these roles; then any check on these databases.
        let explained_by = deviation
            .explaining_areas()
            .iter()
            .find_map(|area| {
                failed
                    .iter()
                    .position(|f| f.area == *area && (on_database(f) || names_role(f)))
            })
            .or_else(|| failed.iter().position(|f| on_database(f)));
        match explained_by {
            Some(i) => causes[i].consequences.push(line),
            None => causes.push(Cause {
                cause: line,
                consequences: Vec::new(),
            }),
        }
    }
    causes
}

/// How a cell deviates: its first differing action, in words, and what kind of outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deviation {
    action: Action,
    kind: DeviationKind,
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviationKind {
    /// Allowed where the policy says denied.
    TooMuch,
    /// Denied where the policy says allowed.
    TooLittle,
    /// Not decided: a lock, the deadline.
    Blocked,
    /// The login failed: wrong password, expired, missing role.
    LoginFailed,
    Error,
}

impl Deviation {
    fn of(c: &Cell) -> Deviation {
        let first = c
            .actual
            .iter()
            .zip(&c.expected)
            .find(|((_, a), (_, e))| a != e);
        let (action, kind) = match first {
            Some(((action, actual), (_, expected))) => (
                *action,
                match (actual, expected) {
                    (Outcome::Allowed, _) => DeviationKind::TooMuch,
                    (Outcome::Denied, _) => DeviationKind::TooLittle,
                    (Outcome::Blocked(_), _) => DeviationKind::Blocked,
                    (Outcome::Error(m), _) if m.contains("28P01") || m.contains("28000") => {
                        DeviationKind::LoginFailed
                    }
                    _ => DeviationKind::Error,
                },
            ),
            None => (Action::Connect, DeviationKind::Error),
        };
        Deviation {
            action,
            kind,
            text: cell_deviation(c),
        }
    }

    fn is_blocked(&self) -> bool {
        self.kind == DeviationKind::Blocked
    }

    /// Audit checks that can explain this deviation, most specific first.
    fn explaining_areas(&self) -> &'static [&'static str] {
        match (self.action, self.kind) {
            (_, DeviationKind::LoginFailed) => {
                &["password expiry", "role exists", "dangerous attributes"]
            }
            (Action::Connect, DeviationKind::TooLittle) => {
                &["owner privileges", "grants", "owner", "role settings"]
            }
            (Action::Connect, _) => &[
                "PUBLIC privileges",
                "grants",
                "owner",
                "members of service roles",
                "memberships",
            ],
            (Action::Read | Action::Write, _) => &[
                "grants on tables and sequences beyond the role model",
                "column grants",
                "object ownership",
                "owner privileges",
                "default privileges",
                "memberships",
                "members of service roles",
            ],
            (Action::Ddl, _) => &[
                "schema public: CREATE beyond the owner",
                "schema privileges",
                "owner",
                "memberships",
            ],
            (Action::TempTable, _) => &["PUBLIC privileges", "grants", "owner"],
            (Action::SetRole, _) => &["memberships", "members of service roles"],
        }
    }
}

fn describe_finding(f: &Finding) -> String {
    if f.expected == "none" {
        format!("{}: {}: {}", f.subject, f.area, f.actual)
    } else {
        format!(
            "{}: {}: expected {}, found {}",
            f.subject, f.area, f.expected, f.actual
        )
    }
}

/// The report as a person reads it: the matrix, the deviations explained, then the audit.
pub fn render(report: &VerifyReport) -> String {
    let mut out = String::new();
    let role_width = report
        .roles
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(4)
        .max(4);
    let col_width = report
        .databases
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(10)
        .max(12);
    let _ = writeln!(
        out,
        "Isolation matrix: each login role tried each database with its own password."
    );
    let _ = writeln!(
        out,
        "Cell = what succeeded: C connect, R read, W write, D create table, T temp table, S SET ROLE to another service's role;"
    );
    let _ = writeln!(
        out,
        "       '.' refused by PostgreSQL, '-' not tried (no connection), 'B' blocked (a lock, the deadline), 'E' error. 'ok' = as declared, 'FAIL' = deviation."
    );
    let _ = writeln!(out);
    let _ = write!(out, "{:role_width$}", "role");
    for db in &report.databases {
        let _ = write!(out, "  {db:col_width$}");
    }
    let _ = writeln!(out);
    for role in &report.roles {
        let _ = write!(out, "{role:role_width$}");
        for db in &report.databases {
            let cell = report
                .cells
                .iter()
                .find(|c| &c.role == role && &c.database == db);
            let text = match cell {
                Some(c) => format!(
                    "{} {}",
                    Cell::pattern(&c.actual),
                    if c.ok { "ok" } else { "FAIL" }
                ),
                None => "?".to_owned(),
            };
            let _ = write!(out, "  {text:col_width$}");
        }
        let _ = writeln!(out);
    }
    if !report.causes.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Deviations ({} cause{}, one per line; what follows from each is indented):",
            report.causes.len(),
            if report.causes.len() == 1 { "" } else { "s" }
        );
        for (i, c) in report.causes.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, c.cause);
            for consequence in &c.consequences {
                let _ = writeln!(out, "       -> {consequence}");
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Audit (checks that passed; failures are the deviations above):"
    );
    for f in report.audit.iter().filter(|f| f.ok) {
        let _ = writeln!(out, "  ok    {}: {}: {}", f.subject, f.area, f.actual);
    }
    let _ = writeln!(out);
    let cells_failed = report.cells.iter().filter(|c| !c.ok).count();
    // A check that found several deviations reports each, and counts once.
    let mut checks: std::collections::BTreeMap<&str, bool> = std::collections::BTreeMap::new();
    for f in &report.audit {
        *checks.entry(f.check.as_str()).or_insert(true) &= f.ok;
    }
    let checks_passed = checks.values().filter(|ok| **ok).count();
    let _ = writeln!(
        out,
        "{}: {} of {} cells as declared, {} of {} audit checks passed.",
        match report.outcome {
            VerifyOutcome::Verified => "ISOLATION VERIFIED",
            VerifyOutcome::Violated => "ISOLATION VIOLATED",
            VerifyOutcome::NotProven =>
                "ISOLATION NOT PROVEN (nothing wrong was found, but not everything could be checked)",
        },
        report.cells.len() - cells_failed,
        report.cells.len(),
        checks_passed,
        checks.len()
    );
    // Padding of the last column leaves trailing spaces that only get in a reader's way.
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Allowed => "allowed".into(),
        Outcome::Denied => "denied".into(),
        Outcome::NotTried => "not tried".into(),
        Outcome::Blocked(m) => format!("not proven: {m}"),
        Outcome::Error(m) => format!("failed with an error ({m})"),
    }
}
