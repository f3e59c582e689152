//! What a role can really do. Each test applies a change as a superuser, proves by acting as
//! the role that it gives real access, then checks that `db verify` names it (exit 1), that
//! `db setup` repairs it — or names it and exits 1 when no repair is safe — and that acting
//! as the role fails again.

use std::time::{Duration, Instant};

use marty_config::{Role, Service};
use marty_db::ConnectTarget;
use sqlx::{Connection, PgConnection};

use crate::harness::{TestDb, show, stdout};

async fn provisioned() -> TestDb {
    let db = TestDb::start().await;
    db.provision();
    db
}

/// Connects as a service role to a database of the test server.
async fn as_role(
    db: &TestDb,
    service: Service,
    role: Role,
    database: &str,
) -> Result<PgConnection, String> {
    ConnectTarget::role(db.config().database(service), role)
        .unwrap()
        .with_database(database)
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// Runs `sql` as the connected role; the error text if it is refused.
async fn run(conn: &mut PgConnection, sql: &str) -> Result<(), String> {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `db verify` fails and its deviations name `cause`.
fn verify_names(db: &TestDb, cause: &str) -> String {
    let out = db.marty(&["db", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    let deviations = text.split("\nAudit").next().unwrap_or_default();
    assert!(
        deviations.contains(cause),
        "verify does not name {cause:?}:\n{text}"
    );
    text
}

/// `db setup` succeeds, names `repair`, and a second run changes nothing.
fn setup_repairs(db: &TestDb, repair: &str) {
    let out = db.marty(&["db", "setup"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(repair),
        "setup does not say {repair:?}:\n{}",
        show(&out)
    );
    let again = db.marty_ok(&["db", "setup"]);
    assert!(again.starts_with("setup: nothing changed"), "{again}");
    let out = db.marty(&["db", "verify"]);
    assert!(out.status.success(), "{}", show(&out));
}

#[tokio::test]
async fn a_foreign_takeover_of_a_database_is_undone() {
    let db = provisioned().await;
    // What `db setup --service pkd` did to marty_csca when the guard let a second spelling of
    // the server through: owner changed, CSCA's roles locked out, PKD's app role given DML,
    // the owner's own privileges revoked.
    db.exec(
        "postgres",
        "alter database marty_csca owner to marty_pkd_owner;
         revoke connect on database marty_csca from marty_csca_app, marty_csca_readonly;
         revoke all on database marty_csca from marty_csca_owner;
         grant connect on database marty_csca to marty_pkd_app, marty_pkd_readonly",
    )
    .await;
    db.exec(
        "marty_csca",
        "revoke all on all tables in schema public from marty_csca_owner, marty_csca_app, marty_csca_readonly;
         revoke all on all sequences in schema public from marty_csca_owner, marty_csca_app, marty_csca_readonly;
         grant select, insert, update, delete on all tables in schema public to marty_pkd_app;
         alter default privileges for role marty_pkd_owner in schema public grant select on tables to marty_pkd_readonly",
    )
    .await;
    let mut pkd = as_role(&db, Service::Pkd, Role::App, "marty_csca")
        .await
        .unwrap();
    run(&mut pkd, "select count(*) from outbox").await.unwrap();
    pkd.close().await.ok();
    assert!(
        as_role(&db, Service::Csca, Role::App, "marty_csca")
            .await
            .is_err()
    );

    verify_names(
        &db,
        "database marty_csca: owner: expected marty_csca_owner, found marty_pkd_owner",
    );
    let out = db.marty(&["db", "setup"]);
    assert!(out.status.success(), "{}", show(&out));
    let repairs = stdout(&out);
    for expected in [
        "owner changed from marty_pkd_owner to marty_csca_owner",
        "granted CONNECT to marty_csca_app",
        "revoked CONNECT from marty_pkd_app",
        "table outbox: granted DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE back to its owner marty_csca_owner",
        "table outbox: revoked SELECT from marty_pkd_app",
        "default privileges: revoked SELECT on new tables of marty_pkd_owner in schema public from marty_pkd_readonly",
    ] {
        assert!(
            repairs.contains(expected),
            "missing {expected:?}:\n{repairs}"
        );
    }
    assert!(
        db.marty_ok(&["db", "setup"])
            .starts_with("setup: nothing changed")
    );
    let out = db.marty(&["db", "verify"]);
    assert!(out.status.success(), "{}", show(&out));
    // The CSCA's roles work again; the PKD's are refused.
    let mut csca = as_role(&db, Service::Csca, Role::Owner, "marty_csca")
        .await
        .unwrap();
    run(
        &mut csca,
        "insert into marty_isolation_probe values (42, 'owner writes again')",
    )
    .await
    .unwrap();
    assert!(
        as_role(&db, Service::Pkd, Role::App, "marty_csca")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_owners_own_privileges_are_restored() {
    let db = provisioned().await;
    db.exec(
        "marty_csca",
        "revoke select, insert on marty_isolation_probe from marty_csca_owner",
    )
    .await;
    let mut owner = as_role(&db, Service::Csca, Role::Owner, "marty_csca")
        .await
        .unwrap();
    let denied = run(&mut owner, "select * from marty_isolation_probe")
        .await
        .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    verify_names(
        &db,
        "marty_csca_owner lacks INSERT, SELECT on its own table marty_isolation_probe",
    );
    setup_repairs(
        &db,
        "table marty_isolation_probe: granted INSERT, SELECT back to its owner marty_csca_owner",
    );
    run(&mut owner, "select * from marty_isolation_probe")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_service_role_granted_to_an_outsider_is_revoked() {
    let db = provisioned().await;
    db.exec(
        "postgres",
        "create role marty_test_mallory login password 'mallory-password';
         grant marty_csca_app to marty_test_mallory",
    )
    .await;
    // mallory inherits CONNECT and the app role's table privileges.
    let url = |database: &str| {
        format!(
            "postgres://marty_test_mallory:mallory-password@{}:{}/{database}",
            db.host, db.port
        )
    };
    let mut mallory = PgConnection::connect(&url("marty_csca")).await.unwrap();
    run(&mut mallory, "select * from marty_isolation_probe")
        .await
        .unwrap();
    mallory.close().await.ok();
    verify_names(
        &db,
        "marty_test_mallory is a member of marty_csca_app and can act as it",
    );
    setup_repairs(
        &db,
        "revoked membership of marty_test_mallory in marty_csca_app",
    );
    assert!(PgConnection::connect(&url("marty_csca")).await.is_err());
}

#[tokio::test]
async fn predefined_roles_are_refused_directly_and_through_a_third_role() {
    let db = provisioned().await;
    db.exec(
        "postgres",
        "grant pg_read_server_files to marty_csca_app;
         create role marty_test_middle nologin;
         grant pg_read_all_data to marty_test_middle;
         grant marty_test_middle to marty_pkd_readonly;
         grant pg_execute_server_program to marty_passport_engine_owner",
    )
    .await;
    // pg_read_server_files: the runtime role reads any file the server can.
    let file = db.dir.path().join("server-file.csv");
    std::fs::write(&file, "7,read from the server's disk\n").unwrap();
    let read_file = format!(
        "copy marty_isolation_probe (id, note) from '{}' with (format csv)",
        file.display()
    );
    let mut app = as_role(&db, Service::Csca, Role::App, "marty_csca")
        .await
        .unwrap();
    run(&mut app, &read_file).await.unwrap();
    // pg_execute_server_program: the owner runs programs as the server's OS user.
    let mut owner = as_role(
        &db,
        Service::PassportEngine,
        Role::Owner,
        "marty_passport_engine",
    )
    .await
    .unwrap();
    let program = "copy marty_isolation_probe (id, note) from program 'echo 8,ran a program' with (format csv)";
    run(&mut owner, program).await.unwrap();
    // pg_read_all_data through marty_test_middle: readonly may write nothing, yet reads all.
    let mut readonly = as_role(&db, Service::Pkd, Role::Readonly, "marty_pkd")
        .await
        .unwrap();
    let everything: bool = sqlx::query_scalar("select pg_has_role('pg_read_all_data', 'USAGE')")
        .fetch_one(&mut readonly)
        .await
        .unwrap();
    assert!(everything);
    let text = verify_names(&db, "memberships: marty_csca_app in pg_read_server_files");
    assert!(
        text.contains("marty_pkd_readonly in marty_test_middle"),
        "{text}"
    );
    assert!(
        text.contains("marty_passport_engine_owner in pg_execute_server_program"),
        "{text}"
    );
    setup_repairs(
        &db,
        "revoked membership of marty_csca_app in pg_read_server_files",
    );
    let denied = run(&mut app, &read_file).await.unwrap_err();
    assert!(
        denied.contains("privileges of the pg_read_server_files role"),
        "{denied}"
    );
    let denied = run(&mut owner, program).await.unwrap_err();
    assert!(
        denied.contains("privileges of the pg_execute_server_program role"),
        "{denied}"
    );
}

#[tokio::test]
async fn role_settings_in_a_database_and_expired_passwords_converge() {
    let db = provisioned().await;
    db.exec(
        "postgres",
        "alter role marty_csca_app in database marty_csca set statement_timeout = 0;
         alter role marty_pkd_readonly set search_path = evil, public",
    )
    .await;
    let mut app = as_role(&db, Service::Csca, Role::App, "marty_csca")
        .await
        .unwrap();
    let timeout: String = sqlx::query_scalar("show statement_timeout")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(
        timeout, "0",
        "the per-database setting overrides the role's timeout"
    );
    app.close().await.ok();
    let text = verify_names(
        &db,
        "marty_csca_app has statement_timeout=0 in database marty_csca",
    );
    assert!(
        text.contains("marty_pkd_readonly has the setting search_path=evil, public"),
        "{text}"
    );
    setup_repairs(&db, "reset its settings in database marty_csca");
    let mut app = as_role(&db, Service::Csca, Role::App, "marty_csca")
        .await
        .unwrap();
    let timeout: String = sqlx::query_scalar("show statement_timeout")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(timeout, "30s");

    // An expired password: the role cannot log in; setup used to "reset" it forever.
    db.exec(
        "postgres",
        "alter role marty_pkd_app valid until '2001-01-01'",
    )
    .await;
    assert!(
        as_role(&db, Service::Pkd, Role::App, "marty_pkd")
            .await
            .is_err()
    );
    verify_names(
        &db,
        "marty_pkd_app's password is valid only until 2001-01-01",
    );
    setup_repairs(&db, "password expiry 2001-01-01 00:00:00+00 removed");
    assert!(
        as_role(&db, Service::Pkd, Role::App, "marty_pkd")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn schemas_columns_and_owners_inside_a_service_database() {
    let db = provisioned().await;
    db.exec(
        "marty_csca",
        "create schema side;
         grant create, usage on schema side to marty_csca_app;
         grant update (note) on marty_isolation_probe to marty_csca_readonly;
         alter table outbox owner to marty_csca_app",
    )
    .await;
    let mut app = as_role(&db, Service::Csca, Role::App, "marty_csca")
        .await
        .unwrap();
    // The runtime role creates objects, and alters a table it owns.
    run(&mut app, "create table side.smuggled (id int)")
        .await
        .unwrap();
    run(&mut app, "alter table outbox add column smuggled int")
        .await
        .unwrap();
    let mut readonly = as_role(&db, Service::Csca, Role::Readonly, "marty_csca")
        .await
        .unwrap();
    run(
        &mut readonly,
        "update marty_isolation_probe set note = 'written by readonly'",
    )
    .await
    .unwrap();
    let text = verify_names(
        &db,
        "CREATE, USAGE on schema side is granted to marty_csca_app",
    );
    for expected in [
        "UPDATE on column marty_isolation_probe.note is granted to marty_csca_readonly",
        "table outbox is owned by marty_csca_app, not by marty_csca_owner",
        "table side.smuggled is owned by marty_csca_app, not by marty_csca_owner",
        "schema side is owned by",
    ] {
        assert!(text.contains(expected), "missing {expected:?}:\n{text}");
    }
    setup_repairs(
        &db,
        "schema side: revoked CREATE, USAGE from marty_csca_app",
    );
    let denied = run(&mut app, "create table side.again (id int)")
        .await
        .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    let denied = run(&mut app, "alter table outbox drop column smuggled")
        .await
        .unwrap_err();
    assert!(denied.contains("must be owner"), "{denied}");
    let denied = run(
        &mut readonly,
        "update marty_isolation_probe set note = 'again'",
    )
    .await
    .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
}

#[tokio::test]
async fn security_definer_routines_and_default_privileges_everywhere() {
    let db = provisioned().await;
    let admin = db.config().admin().user.clone();
    db.exec(
        "marty_csca",
        "create function public.as_admin() returns text language sql security definer
             as 'select current_user::text';
         set role marty_csca_owner;
         create function public.as_owner() returns text language sql security definer
             as 'select current_user::text';
         reset role;
         alter default privileges for role marty_csca_owner grant all on tables to marty_pkd_app;
         alter default privileges for role marty_csca_owner grant select on tables to public",
    )
    .await;
    let mut app = as_role(&db, Service::Csca, Role::App, "marty_csca")
        .await
        .unwrap();
    let who: String = sqlx::query_scalar("select as_admin()")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(who, admin, "the app role runs code as the administrator");
    let text = verify_names(
        &db,
        &format!("function as_admin() is SECURITY DEFINER and owned by {admin}"),
    );
    for expected in [
        "function as_owner() is SECURITY DEFINER and executable by PUBLIC",
        "new tables of marty_csca_owner in every schema get DELETE, INSERT",
        "new tables of marty_csca_owner in every schema get SELECT for PUBLIC",
    ] {
        assert!(text.contains(expected), "missing {expected:?}:\n{text}");
    }
    // A function owned by someone else cannot be safely repaired: setup names it and fails.
    let out = db.marty(&["db", "setup"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = stdout(&out);
    assert!(
        report.contains(&format!(
            "NOT REPAIRED: function as_admin() is SECURITY DEFINER and owned by {admin}"
        )),
        "{report}"
    );
    assert!(
        report.contains("function as_owner(): revoked EXECUTE from PUBLIC"),
        "{report}"
    );
    assert!(
        report.contains("default privileges: revoked SELECT on new tables of marty_csca_owner in every schema from PUBLIC"),
        "{report}"
    );
    let denied = run(&mut app, "select as_owner()").await.unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    db.exec("marty_csca", "drop function public.as_admin()")
        .await;
    setup_repairs(&db, "");
}

#[tokio::test]
async fn verify_finishes_when_a_table_is_locked_or_a_server_is_silent() {
    let db = provisioned().await;
    // A session holding the probe table's strongest lock, left open.
    let mut locker = db.admin_on("marty_csca").await;
    sqlx::raw_sql("begin; lock table marty_isolation_probe in access exclusive mode")
        .execute(&mut locker)
        .await
        .unwrap();
    let started = Instant::now();
    let out = db.marty(&["db", "verify"]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("waited for a lock held by another session"),
        "{text}"
    );
    assert!(
        text.contains("CBBDT. FAIL"),
        "a blocked read and write are shown as B:\n{text}"
    );
    sqlx::raw_sql("rollback")
        .execute(&mut locker)
        .await
        .unwrap();

    // A server that accepts connections and never answers: the run's deadline ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    let out = db.marty_with(
        &["db", "verify", "--timeout", "2"],
        &[("PKD_DB_PORT", &port)],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("not finished within the run's deadline of 2s"),
        "{}",
        show(&out)
    );
    drop(silent);
}

#[tokio::test]
async fn two_setups_at_once_on_a_fresh_server_both_succeed() {
    let db = TestDb::start().await;
    let children: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_marty"));
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
            for (k, v) in db.env() {
                cmd.env(k, v);
            }
            cmd.args(["db", "setup"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", show(&out));
    }
    db.marty_ok(&["db", "migrate"]);
    assert!(db.marty(&["db", "verify"]).status.success());
}

#[tokio::test]
async fn one_cause_is_one_line() {
    let db = provisioned().await;
    db.exec("postgres", "grant connect on database marty_csca to public")
        .await;
    let out = db.marty(&["db", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let deviations: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Deviations"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(deviations[0].starts_with("Deviations (1 cause,"), "{text}");
    assert_eq!(
        deviations[1], "  1. database marty_csca: PUBLIC privileges: CONNECT",
        "{text}"
    );
    // Everything else is what follows from it: the other services' roles connecting.
    assert_eq!(deviations.len(), 3, "{text}");
    assert!(
        deviations[2].contains("9 roles") && deviations[2].contains("can connect"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&db.marty(&["db", "verify", "--json"]).stdout).unwrap();
    assert_eq!(json["causes"].as_array().unwrap().len(), 1, "{json}");
}
