//! What a role can really do. Each test applies a change as a superuser, proves by acting as
//! the role that it gives real access, then checks that `db verify` names it (exit 1), that
//! `db setup` repairs it — or names it and exits 1 when no repair is safe — and that acting
//! as the role fails again.

use std::time::{Duration, Instant};

use marty_config::{Role, Service};
use marty_db::ConnectTarget;
use sqlx::{Connection, PgConnection};

use crate::harness::{MartyCli, TestDb, show, stdout};

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
        "table public.outbox: granted DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE back to its owner marty_csca_owner",
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
        "marty_csca_owner lacks INSERT, SELECT on its own table public.marty_isolation_probe",
    );
    setup_repairs(
        &db,
        "table public.marty_isolation_probe: granted INSERT, SELECT back to its owner marty_csca_owner",
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
        "UPDATE on column public.marty_isolation_probe.note is granted to marty_csca_readonly",
        "table public.outbox is owned by marty_csca_app, not by marty_csca_owner",
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
        &format!("function public.as_admin() is SECURITY DEFINER and owned by {admin}"),
    );
    for expected in [
        "function public.as_owner() is SECURITY DEFINER and executable by PUBLIC",
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
            "NOT REPAIRED: function public.as_admin() is SECURITY DEFINER and owned by {admin}"
        )),
        "{report}"
    );
    assert!(
        report.contains("function public.as_owner(): revoked EXECUTE from PUBLIC"),
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
    // Undecided, not violated: exit 2 (a periodic job tells the two apart).
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("waited for a lock held by another session"),
        "{text}"
    );
    assert!(
        text.contains("ISOLATION NOT PROVEN"),
        "only what could not be decided is reported:\n{text}"
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
    assert!(show(&out).contains("no answer within"), "{}", show(&out));
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
    assert_eq!(json["outcome"], "violated");

    // A role whose password changed behind Marty's back fails its login everywhere alike:
    // one line, not one per database.
    db.exec(
        "postgres",
        "revoke connect on database marty_csca from public",
    )
    .await;
    db.exec(
        "postgres",
        "alter role marty_pkd_app password 'changed-by-hand'",
    )
    .await;
    let out = db.marty(&["db", "verify"]);
    let text = stdout(&out);
    let deviations: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Deviations"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(deviations.len(), 2, "{text}");
    assert!(
        deviations[1].contains("marty_pkd_app on 5 databases")
            && deviations[1].contains("cannot log in: password authentication failed"),
        "{text}"
    );
}

/// The role's attributes, read by the administrator.
async fn is_superuser(db: &TestDb, role: &str) -> bool {
    let mut admin = db.admin().await;
    sqlx::query_scalar("select rolsuper from pg_roles where rolname = $1")
        .bind(role)
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_administrators_sessions_cannot_be_made_to_run_the_owners_code() {
    let db = provisioned().await;
    // 1. A function in public named like a catalog function, with an argument type that
    //    matches better than pg_catalog's: a session that searched public first would call it.
    let mut owner = as_role(&db, Service::Csca, Role::Owner, "marty_csca")
        .await
        .unwrap();
    run(
        &mut owner,
        "create function public.quote_ident(name) returns text language plpgsql as $$
         begin
           if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
             execute 'alter role marty_csca_owner superuser';
           end if;
           return pg_catalog.quote_ident($1::text);
         end $$",
    )
    .await
    .unwrap();
    verify_names(
        &db,
        "public.quote_ident(name) has the name of a routine or operator of pg_catalog",
    );
    assert!(!is_superuser(&db, "marty_csca_owner").await);
    let out = db.marty(&["db", "setup"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("NOT REPAIRED: public.quote_ident(name)"),
        "{}",
        show(&out)
    );
    assert!(!is_superuser(&db, "marty_csca_owner").await);
    run(&mut owner, "drop function public.quote_ident(name)")
        .await
        .unwrap();
    assert!(db.marty(&["db", "verify"]).status.success());

    // 2. An event trigger whose function the owner controls: it would run in the
    //    administrator's session at setup's first repair.
    db.exec(
        "marty_csca",
        "set role marty_csca_owner;
         create function public.audit_ddl() returns event_trigger language plpgsql as $$
         begin
           if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
             execute 'alter role marty_csca_owner superuser';
           end if;
         end $$;
         reset role;
         grant select on crls to public;
         create event trigger audit_ddl on ddl_command_end execute function public.audit_ddl()",
    )
    .await;
    // The grant to PUBLIC is drift setup repairs with DDL: the trigger must be off first.
    verify_names(&db, "event trigger audit_ddl (owned by");
    setup_repairs(&db, "event trigger audit_ddl: disabled");
    assert!(!is_superuser(&db, "marty_csca_owner").await);
}

#[tokio::test]
async fn database_settings_templates_large_objects_and_publications() {
    let db = provisioned().await;
    db.exec(
        "postgres",
        "alter database marty_csca set session_replication_role = replica;
         alter role all in database marty_pkd set search_path = evil, public;
         alter database marty_document_signer is_template true",
    )
    .await;
    let mut app = as_role(&db, Service::Csca, Role::App, "marty_csca")
        .await
        .unwrap();
    let role: String = sqlx::query_scalar("show session_replication_role")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(
        role, "replica",
        "foreign keys and triggers are off for the app role"
    );
    app.close().await.ok();
    // Large objects: setup took from PUBLIC the right to create them; given back, a readonly
    // role creates its own, and writes through one that is open to PUBLIC.
    let mut readonly = as_role(&db, Service::Csca, Role::Readonly, "marty_csca")
        .await
        .unwrap();
    let denied = run(&mut readonly, "select lo_from_bytea(0, 'before')")
        .await
        .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    db.exec(
        "marty_csca",
        "grant execute on function lo_from_bytea(oid, bytea) to public;
         select lo_create(4242);
         grant select, update on large object 4242 to public",
    )
    .await;
    let mut readonly = as_role(&db, Service::Csca, Role::Readonly, "marty_csca")
        .await
        .unwrap();
    run(
        &mut readonly,
        "select lo_put(4242, 0, 'written by readonly')",
    )
    .await
    .unwrap();
    run(&mut readonly, "select lo_from_bytea(0, 'more')")
        .await
        .unwrap();
    let text = verify_names(
        &db,
        "the database sets session_replication_role=replica for every role in it",
    );
    assert!(
        text.contains("UPDATE on large object 4242 is granted to PUBLIC"),
        "{text}"
    );
    assert!(
        text.contains("so even the readonly role can write data"),
        "{text}"
    );
    assert!(
        text.contains("the database sets search_path=evil, public"),
        "{text}"
    );
    assert!(
        text.contains("database marty_document_signer: template flag"),
        "{text}"
    );
    // migrate, as the owner, refuses a database that is a template.
    let out = db.marty(&["db", "migrate"]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        stdout(&out).is_empty() && show(&out).contains("is marked as a template"),
        "{}",
        show(&out)
    );
    setup_repairs(
        &db,
        "reset the database's settings (session_replication_role=replica)",
    );
    let mut app = as_role(&db, Service::Csca, Role::App, "marty_csca")
        .await
        .unwrap();
    let role: String = sqlx::query_scalar("show session_replication_role")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(role, "origin");
    let denied = run(&mut readonly, "select lo_put(4242, 0, 'again')")
        .await
        .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    let denied = run(&mut readonly, "select lo_from_bytea(0, 'again')")
        .await
        .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");

    // A publication copies every table out by logical replication: named, not dropped.
    db.exec("marty_pkd", "create publication leak for all tables")
        .await;
    verify_names(&db, "publication leak exists");
    let out = db.marty(&["db", "setup"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("NOT REPAIRED: publication leak exists"),
        "{}",
        show(&out)
    );
    db.exec("marty_pkd", "drop publication leak").await;

    // A setting for every role of the server that changes what statements do.
    db.exec(
        "postgres",
        "alter role all set session_replication_role = replica",
    )
    .await;
    verify_names(
        &db,
        "every role of the server has session_replication_role=replica",
    );
    db.exec("postgres", "alter role all reset session_replication_role")
        .await;
    assert!(db.marty(&["db", "verify"]).status.success());
}

/// A TCP proxy that renames the database of every PostgreSQL startup packet, as a
/// connection pooler can: `from` is served as `to`.
async fn renaming_proxy(upstream_port: u16, from: &'static str, to: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port))
                    .await
                    .unwrap();
                loop {
                    let len = client.read_u32().await.unwrap() as usize;
                    let mut body = vec![0u8; len - 4];
                    client.read_exact(&mut body).await.unwrap();
                    let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    if code == 80_877_103 {
                        // SSLRequest: no TLS on the test cluster; relay the answer ('N').
                        server.write_u32(len as u32).await.unwrap();
                        server.write_all(&body).await.unwrap();
                        let mut answer = [0u8; 1];
                        server.read_exact(&mut answer).await.unwrap();
                        client.write_all(&answer).await.unwrap();
                        continue;
                    }
                    let mut fields: Vec<Vec<u8>> =
                        body[4..].split(|b| *b == 0).map(<[u8]>::to_vec).collect();
                    for i in 0..fields.len().saturating_sub(1) {
                        if fields[i] == b"database" && fields[i + 1] == from.as_bytes() {
                            fields[i + 1] = to.as_bytes().to_vec();
                        }
                    }
                    let mut packet = body[..4].to_vec();
                    packet.extend(fields.join(&0u8));
                    server.write_u32(packet.len() as u32 + 4).await.unwrap();
                    server.write_all(&packet).await.unwrap();
                    break;
                }
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await.ok() });
                tokio::io::copy(&mut sr, &mut cw).await.ok();
            });
        }
    });
    port
}

// Multi-threaded: the proxy serves while the test blocks on a `marty` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_that_renames_databases_is_refused() {
    let db = provisioned().await;
    let proxy = renaming_proxy(db.port, "marty_pkd", "marty_csca")
        .await
        .to_string();
    for command in [
        &["db", "setup", "--service", "pkd"][..],
        &["db", "setup"],
        &["db", "verify"],
    ] {
        let out = db.marty_with(command, &[("PKD_DB_PORT", &proxy)]);
        assert_eq!(out.status.code(), Some(3), "{command:?}\n{}", show(&out));
        assert!(
            show(&out).contains("connected it to database marty_csca"),
            "{command:?}\n{}",
            show(&out)
        );
    }
    // Nothing of marty_csca changed hands.
    let mut admin = db.admin_on("marty_csca").await;
    let owners: Vec<String> = sqlx::query_scalar(
        "select distinct pg_get_userbyid(relowner)::text from pg_class
          where relnamespace = 'public'::regnamespace",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(owners, vec!["marty_csca_owner".to_owned()]);
    assert!(db.marty(&["db", "verify"]).status.success());
}

#[tokio::test]
async fn setups_from_different_maintenance_databases_still_take_turns() {
    let db = TestDb::start().await;
    db.exec("postgres", "create database marty_test_admindb2")
        .await;
    let other_admin = format!(
        "{}/marty_test_admindb2",
        db.admin_url.rsplit_once('/').unwrap().0
    );
    let children: Vec<_> = [None, Some(other_admin)]
        .into_iter()
        .map(|admin| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_marty"));
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
            for (k, v) in db.env() {
                cmd.env(k, v);
            }
            if let Some(url) = admin {
                cmd.env("MARTY_ADMIN_DATABASE_URL", url);
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
}
