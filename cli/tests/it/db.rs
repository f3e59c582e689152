use std::net::TcpListener;
use std::time::{Duration, Instant};

use marty_config::{Role, Service};
use marty_db::ConnectTarget;
use marty_db::connect::{ConnectFailure, sqlstate};
use sqlx::Connection;
use sqlx::migrate::Migrator;

use crate::harness::{MartyCli, TestDb, show, stderr, stdout};

/// The verify report with the administrator's name (which differs between a private cluster
/// and a shared server) replaced, so the golden file is the same everywhere.
fn normalise(report: &str, admin_user: &str) -> String {
    report.replace(&format!("owner: {admin_user}\n"), "owner: <admin>\n")
}

#[tokio::test]
async fn setup_is_idempotent_and_verify_matches_the_golden_matrix() {
    let db = TestDb::start().await;
    let first = db.marty_ok(&["db", "setup"]);
    assert!(
        first.contains("marty_csca_app                   created role"),
        "{first}"
    );
    assert!(
        first
            .contains("marty_pkd                        created database owned by marty_pkd_owner"),
        "{first}"
    );
    assert!(
        first.contains("marty_dev                        revoked CONNECT from PUBLIC"),
        "{first}"
    );
    let second = db.marty_ok(&["db", "setup"]);
    assert!(second.starts_with("setup: nothing changed"), "{second}");
    let json: serde_json::Value =
        serde_json::from_str(&db.marty_ok(&["db", "setup", "--json"])).unwrap();
    assert_eq!(json["changes"], serde_json::json!([]));

    db.marty_ok(&["db", "migrate"]);
    let out = db.marty(&["db", "verify"]);
    assert!(out.status.success(), "{}", show(&out));
    let actual = normalise(&stdout(&out), &db.config().admin().user);
    let golden_path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/db-verify.txt");
    if std::env::var_os("MARTY_UPDATE_GOLDEN").is_some() {
        std::fs::write(golden_path, &actual).unwrap();
    }
    let golden = std::fs::read_to_string(golden_path).unwrap();
    assert_eq!(
        actual, golden,
        "db verify output differs from {golden_path} (MARTY_UPDATE_GOLDEN=1 rewrites it)"
    );

    // The JSON form carries the same verdicts.
    let out = db.marty(&["db", "verify", "--json", "--concurrency", "1"]);
    assert!(out.status.success(), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["deviations"], 0);
    assert_eq!(report["cells"].as_array().unwrap().len(), 60);
}

#[tokio::test]
async fn drift_is_detected_named_and_repaired() {
    let db = TestDb::start().await;
    db.provision();
    db.exec("postgres", "grant connect on database marty_csca to public")
        .await;
    db.exec(
        "marty_pkd",
        "alter default privileges for role marty_pkd_owner in schema public revoke insert on tables from marty_pkd_app",
    )
    .await;
    db.exec(
        "postgres",
        "alter database marty_document_signer owner to marty_passport_engine_owner",
    )
    .await;
    db.exec("postgres", "alter role marty_passport_engine_app createdb")
        .await;
    db.exec("postgres", "grant marty_csca_owner to marty_pkd_readonly")
        .await;
    db.exec("marty_csca", "grant create on schema public to public")
        .await;
    db.exec("marty_pkd", "grant insert on marty_isolation_probe to public; grant update on outbox_id_seq to marty_pkd_readonly")
        .await;

    let out = db.marty(&["db", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = stdout(&out);
    for expected in [
        // One cause per line; foreign roles connecting to marty_csca is what follows from
        // the PUBLIC grant, shown beneath it.
        ". database marty_csca: PUBLIC privileges: CONNECT\n       -> 8 roles (marty_document_signer_owner, marty_document_signer_app, marty_document_signer_readonly, marty_passport_engine_owner, marty_passport_engine_app, marty_passport_engine_readonly, marty_pkd_owner, marty_pkd_app) on marty_csca: can connect, declared refused",
        ". database marty_csca: schema public: CREATE beyond the owner: PUBLIC\n       -> 2 roles (marty_csca_app, marty_csca_readonly) on marty_csca: create table allowed, declared denied",
        ". database marty_pkd: new tables of marty_pkd_owner for marty_pkd_app: default privileges: expected DELETE, INSERT, SELECT, UPDATE, found DELETE, SELECT, UPDATE",
        ". database marty_document_signer: owner: expected marty_document_signer_owner, found marty_passport_engine_owner",
        ". role marty_passport_engine_app: dangerous attributes: CREATEDB",
        ". service roles: memberships: marty_pkd_readonly in marty_csca_owner",
        ". database marty_pkd: grants on tables and sequences beyond the role model: INSERT on marty_isolation_probe to PUBLIC, UPDATE on outbox_id_seq to marty_pkd_readonly\n       -> marty_pkd_readonly on marty_pkd: write allowed, declared denied",
        "ISOLATION VIOLATED",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }

    let repairs = db.marty_ok(&["db", "setup"]);
    for expected in [
        "marty_csca                       revoked CONNECT from PUBLIC",
        "marty_csca                       schema public: revoked CREATE from PUBLIC",
        "marty_pkd                        default privileges: granted INSERT on new tables of marty_pkd_owner to marty_pkd_app",
        "marty_document_signer            owner changed from marty_passport_engine_owner to marty_document_signer_owner",
        "marty_passport_engine_app        repaired attributes: NOCREATEDB",
        "marty_csca_owner                 revoked membership of marty_pkd_readonly in marty_csca_owner",
        "marty_pkd                        table marty_isolation_probe: revoked INSERT from PUBLIC",
        "marty_pkd                        sequence outbox_id_seq: revoked UPDATE from marty_pkd_readonly",
    ] {
        assert!(
            repairs.contains(expected),
            "missing {expected:?} in:\n{repairs}"
        );
    }
    let out = db.marty(&["db", "verify"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        db.marty_ok(&["db", "setup"])
            .starts_with("setup: nothing changed")
    );
}

#[tokio::test]
async fn postgres_itself_denies_every_cross_service_login() {
    let db = TestDb::start().await;
    db.provision();
    let config = db.config();
    for service in Service::ALL {
        for role in Role::ALL {
            let own = ConnectTarget::role(config.database(service), role).unwrap();
            let mut conn = own
                .connect()
                .await
                .unwrap_or_else(|e| panic!("{service} {role} own database: {e}"));
            sqlx::query("select 1").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            let mut foreign: Vec<String> = Service::ALL
                .iter()
                .filter(|s| **s != service)
                .map(|s| s.default_database())
                .collect();
            foreign.push("marty_dev".into());
            for database in foreign {
                match own.with_database(&database).try_connect().await {
                    Ok(_) => panic!("{} could connect to {database}", own.user),
                    Err(ConnectFailure::Driver(e)) => {
                        assert_eq!(
                            sqlstate(&e).as_deref(),
                            Some("42501"),
                            "{} on {database}: {e}",
                            own.user
                        );
                        assert!(
                            e.to_string().contains(&format!(
                                "permission denied for database \"{database}\""
                            )),
                            "{e}"
                        );
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
        }
    }
    // A wrong password is rejected, even for the service's own database.
    let app = ConnectTarget::role(config.database(Service::Csca), Role::App).unwrap();
    match app.with_password("not-the-password").try_connect().await {
        Err(ConnectFailure::Driver(e)) => assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}"),
        other => panic!("wrong password: {:?}", other.map(|_| ())),
    }
    // The app role cannot change the schema nor rewrite migration history.
    let mut conn = app.connect().await.unwrap();
    let ddl = sqlx::raw_sql("create table sneaky (id int)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&ddl).as_deref(), Some("42501"));
    let history = sqlx::raw_sql("delete from _sqlx_migrations")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&history).as_deref(), Some("42501"));
    // …but it can read and write its own tables.
    sqlx::raw_sql("insert into inbox (event_id, source, event_type) values (gen_random_uuid(), 'pkd', 'pkd.test')")
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_migrations_apply_exactly_once() {
    let db = TestDb::start().await;
    db.marty_ok(&["db", "setup"]);
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_marty"));
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
            for (k, v) in db.env() {
                cmd.env(k, v);
            }
            cmd.args(["db", "migrate", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut applied_per_service = std::collections::BTreeMap::<String, usize>::new();
    for out in &outputs {
        assert!(out.status.success(), "{}", show(out));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for row in rows.as_array().unwrap() {
            *applied_per_service
                .entry(row["service"].as_str().unwrap().to_owned())
                .or_default() += row["applied"].as_array().unwrap().len();
        }
    }
    for service in Service::ALL {
        let migrations = migrator(service).iter().count();
        assert_eq!(
            applied_per_service[service.id()],
            migrations,
            "{service}: applied once in total across processes"
        );
        let mut conn = db.admin_on(&service.default_database()).await;
        let rows: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(rows as usize, migrations);
    }
    let status: serde_json::Value =
        serde_json::from_str(&db.marty_ok(&["db", "status", "--json"])).unwrap();
    for s in status.as_array().unwrap() {
        assert_eq!(s["reachable"], true, "{s}");
        assert_eq!(s["pending"], serde_json::json!([]), "{s}");
        assert!(!s["applied"].as_array().unwrap().is_empty());
    }
}

/// The services as the binary knows them: their descriptors.
const DESCRIPTORS: [&marty_runtime::ServiceDescriptor; 4] = [
    &marty_csca::DESCRIPTOR,
    &marty_document_signer::DESCRIPTOR,
    &marty_passport_engine::DESCRIPTOR,
    &marty_pkd::DESCRIPTOR,
];

fn migrator(service: Service) -> &'static Migrator {
    DESCRIPTORS
        .iter()
        .find(|d| d.service == service)
        .map(|d| d.migrator)
        .unwrap()
}

#[tokio::test]
async fn an_edited_applied_migration_is_reported() {
    let db = TestDb::start().await;
    db.marty_ok(&["db", "setup", "--service", "csca"]);
    let config = db.config();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("1_first.sql");
    std::fs::write(&file, "create table first_table (id int);").unwrap();
    let migrator = Migrator::new(dir.path()).await.unwrap();
    let outcome = marty_db::migrate::migrate(config.database(Service::Csca), &migrator)
        .await
        .unwrap();
    assert_eq!(outcome.applied.len(), 1);

    std::fs::write(&file, "create table first_table (id bigint);").unwrap();
    let edited = Migrator::new(dir.path()).await.unwrap();
    let err = marty_db::migrate::migrate(config.database(Service::Csca), &edited)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("csca: migration 1 was applied to ")
            && message.contains("an applied migration must never be edited"),
        "{message}"
    );
}

#[tokio::test]
async fn a_url_password_with_a_plus_works_for_marty_and_libpq_alike() {
    let db = TestDb::start().await;
    // `+` is a literal plus in a URL's userinfo (RFC 3986); `%20` is a space.
    let url = format!(
        "postgres://marty_csca_app:plus+and%20space@{}:{}/marty_csca",
        db.host, db.port
    );
    db.marty_ok(&["db", "setup"]);
    let out = db.marty_with(&["db", "setup"], &[("CSCA_DATABASE_URL", &url)]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("marty_csca_app                   password reset"),
        "{}",
        show(&out)
    );
    // The same URL logs in through libpq (psql) and through Marty.
    if std::process::Command::new("psql")
        .arg("--version")
        .output()
        .is_ok()
    {
        let psql = std::process::Command::new("psql")
            .args([url.as_str(), "-tAc", "select current_user"])
            .output()
            .unwrap();
        assert!(psql.status.success(), "{}", show(&psql));
        assert_eq!(
            String::from_utf8_lossy(&psql.stdout).trim(),
            "marty_csca_app"
        );
    }
    let out = db.marty_with(&["db", "test-connections"], &[("CSCA_DATABASE_URL", &url)]);
    assert!(stdout(&out).contains("ok    csca"), "{}", show(&out));
    // And nothing changes on the next run.
    let out = db.marty_with(
        &["db", "setup", "--service", "csca"],
        &[("CSCA_DATABASE_URL", &url)],
    );
    assert!(
        stdout(&out).starts_with("setup: nothing changed"),
        "{}",
        show(&out)
    );
}

#[tokio::test]
async fn status_and_test_connections() {
    let db = TestDb::start().await;
    db.marty_ok(&["db", "setup"]);
    let before = db.marty_ok(&["db", "status"]);
    assert!(
        before.contains("pending:     20261128000001 initial"),
        "{before}"
    );
    db.marty_ok(&["db", "migrate"]);
    let after = db.marty_ok(&["db", "status"]);
    assert!(
        after.contains("applied:     20261128000001 initial"),
        "{after}"
    );
    assert!(after.contains("pending:     none"), "{after}");
    let out = db.marty_ok(&["db", "test-connections"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&db.marty_ok(&["db", "test-connections", "--json"])).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true && c["latency_ms"].as_f64().unwrap() > 0.0)
    );

    // A service whose password is wrong fails test-connections with exit 1.
    let out = db.marty_with(
        &["db", "test-connections"],
        &[("MARTY_PKD_APP_PASSWORD", "wrong")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout(&out).contains("FAIL  pkd"), "{}", show(&out));
    assert!(
        stdout(&out).contains("password authentication failed for user \"marty_pkd_app\""),
        "{}",
        show(&out)
    );
}

#[tokio::test]
async fn configurations_that_break_isolation_are_refused() {
    let db = TestDb::start().await;
    let (host, port) = (&db.host, db.port);
    // One database, many spellings of its server: only the server's own identity tells.
    let mut same_database = vec![
        format!("postgres://{host}:{port}/marty_csca"),
        format!("postgres://localhost:{port}/marty_csca"),
    ];
    if let Some(socket) = &db.socket_dir {
        same_database.push(format!(
            "postgres:///marty_csca?host={}&port={port}",
            socket.display()
        ));
        same_database.push(format!(
            "postgres://marty_pkd_app@{}:{port}/marty_csca",
            socket.display().to_string().replace('/', "%2F")
        ));
    }
    let mut cases: Vec<(&str, String, &str)> = same_database
        .into_iter()
        .map(|url| ("PKD_SERVICE_DATABASE_URL", url, "services csca ("))
        .collect();
    cases.push((
        "PASSPORT_ENGINE_DATABASE_URL",
        format!("postgres://{host}:{port}/marty_dev"),
        "service passport_engine is configured to use the legacy shared database marty_dev",
    ));
    for system in ["template1", "template0", "postgres"] {
        cases.push((
            "CSCA_DATABASE_URL",
            format!("postgres://{host}:{port}/{system}"),
            "one of PostgreSQL's own databases",
        ));
    }
    cases.push((
        "MARTY_DATABASE_URL",
        format!("postgres://{host}:{port}/template1"),
        "the legacy shared database is configured as template1",
    ));
    for (var, url, expected) in &cases {
        for command in [
            &["db", "setup"][..],
            &["db", "setup", "--service", "pkd"],
            &["db", "verify"],
        ] {
            let out = db.marty_with(command, &[(var, url)]);
            // A configuration that breaks isolation is an invalid configuration: exit 3.
            assert_eq!(
                out.status.code(),
                Some(3),
                "{var}={url} {command:?}\n{}",
                show(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains(
                    "refusing to continue, the configuration would break database isolation"
                ),
                "{var}={url}: {err}"
            );
            assert!(err.contains(expected), "{var}={url}: {err}");
        }
    }
    // Nothing was created, and template1 was not given away.
    let mut conn = db.admin().await;
    let n: i64 =
        sqlx::query_scalar("select count(*) from pg_database where datname like 'marty\\_%'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(n, 0);
    let owner: String = sqlx::query_scalar(
        "select pg_get_userbyid(datdba)::text from pg_database where datname = 'template1'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(Service::parse_role_name(&owner).is_none(), "{owner}");

    // Provisioned properly, the same spellings are refused by migrate (as each owner) too,
    // and marty_csca keeps its owner and its roles.
    db.provision();
    for (var, url, _) in cases
        .iter()
        .filter(|(v, ..)| *v == "PKD_SERVICE_DATABASE_URL")
    {
        let out = db.marty_with(&["db", "migrate", "--service", "pkd"], &[(var, url)]);
        assert_eq!(out.status.code(), Some(3), "{url}\n{}", show(&out));
        assert!(
            stderr(&out).contains("would break database isolation"),
            "{url}: {}",
            show(&out)
        );
        let out = db.marty_with(&["db", "setup", "--service", "pkd"], &[(var, url)]);
        assert_eq!(out.status.code(), Some(3), "{url}\n{}", show(&out));
    }
    let owner: String = sqlx::query_scalar(
        "select pg_get_userbyid(datdba)::text from pg_database where datname = 'marty_csca'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(owner, "marty_csca_owner");
    assert!(db.marty(&["db", "verify"]).status.success());

    // Someone else's template database, whatever its name, is refused as a service's or as
    // the legacy database.
    db.exec(
        "postgres",
        "create database marty_test_template is_template true",
    )
    .await;
    let template = format!("postgres://{host}:{port}/marty_test_template");
    for var in ["PKD_SERVICE_DATABASE_URL", "MARTY_DATABASE_URL"] {
        let out = db.marty_with(&["db", "setup"], &[(var, &template)]);
        assert_eq!(out.status.code(), Some(3), "{var}\n{}", show(&out));
        assert!(
            stderr(&out).contains("is a template database"),
            "{var}\n{}",
            show(&out)
        );
    }
}

#[tokio::test]
async fn administrators_need_createrole_and_createdb_but_not_superuser() {
    let db = TestDb::start().await;
    db.exec(
        "postgres",
        "create role marty_test_weak login password 'weak-pass' nocreaterole nocreatedb",
    )
    .await;
    let url = format!(
        "postgres://marty_test_weak:weak-pass@{}:{}/postgres",
        db.host, db.port
    );
    let out = db.marty_with(&["db", "setup"], &[("MARTY_ADMIN_DATABASE_URL", &url)]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out)
            .contains("the administrative role marty_test_weak lacks CREATEROLE and CREATEDB"),
        "{}",
        show(&out)
    );
    db.exec("postgres", "alter role marty_test_weak createrole")
        .await;
    let out = db.marty_with(&["db", "setup"], &[("MARTY_ADMIN_DATABASE_URL", &url)]);
    assert!(
        stderr(&out).contains("the administrative role marty_test_weak lacks CREATEDB"),
        "{}",
        show(&out)
    );

    // With CREATEROLE and CREATEDB (no SUPERUSER) provisioning works, and isolation holds.
    db.exec("postgres", "alter role marty_test_weak createdb")
        .await;
    let env = [("MARTY_ADMIN_DATABASE_URL", url.as_str())];
    let out = db.marty_with(&["db", "setup"], &env);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(
            "granted to administrative role marty_test_weak so it can manage the database"
        ),
        "{}",
        show(&out)
    );
    let out = db.marty_with(&["db", "setup"], &env);
    assert!(
        stdout(&out).starts_with("setup: nothing changed"),
        "{}",
        show(&out)
    );
    let out = db.marty_with(&["db", "migrate"], &env);
    assert!(out.status.success(), "{}", show(&out));
    let out = db.marty_with(&["db", "verify"], &env);
    assert!(out.status.success(), "{}", show(&out));
}

#[tokio::test]
async fn an_unreachable_server_is_named_within_the_connect_timeout() {
    let db = TestDb::start().await;
    // Nobody listens: refused at once.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let url = format!("postgres://nobody:x@127.0.0.1:{closed}/postgres");
    let out = db.marty_with(&["db", "setup"], &[("MARTY_ADMIN_DATABASE_URL", &url)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot connect to 127.0.0.1:{closed} (database postgres, role nobody)"
        )),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");

    // Accepts TCP but never answers: the connect timeout (3 s in testing.yaml) ends it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    let out = db.marty_with(&["db", "test-connections"], &[("DB_PORT", &port)]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("no answer within 3s"),
        "{}",
        show(&out)
    );
    // Four services, each bounded by the timeout.
    assert!(elapsed < Duration::from_secs(4 * 3 + 5), "took {elapsed:?}");
    drop(silent);
}

#[tokio::test]
async fn config_show_names_origins_and_masks_secrets() {
    let db = TestDb::start().await;
    let out = db.marty_with(
        &["config", "show", "--service", "pkd-service", "--json"],
        &[
            ("MARTY_PKD_APP_PASSWORD", "VisibleIfLeaked"),
            ("PKD_DB_PORT", "6000"),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(!text.contains("VisibleIfLeaked"));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let settings = json["settings"].as_array().unwrap();
    assert!(settings.iter().all(|s| s["service"] == "pkd"));
    let find = |key: &str| settings.iter().find(|s| s["key"] == key).unwrap().clone();
    assert_eq!(
        find("services.pkd.port")["origin"],
        serde_json::json!({"kind": "env", "var": "PKD_DB_PORT"})
    );
    assert_eq!(find("services.pkd.passwords.app")["value"], "********");
    assert_eq!(find("services.pkd.database")["origin"]["kind"], "file");

    // Production never reads the development secrets file, even when one is there.
    db.marty_ok(&["db", "setup"]);
    assert!(db.state_dir().join("secrets.json").exists());
    let out = db.marty_with(
        &["config", "show"],
        &[("MARTY_ENV", "production"), ("DB_HOST", "pg.example.org")],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!stdout(&out).contains("secrets file"), "{}", show(&out));
    assert!(stdout(&out).contains("(not set)"), "{}", show(&out));

    let out = db.marty(&["config", "show", "--service", "vault"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("unknown service \"vault\": valid services are csca, document_signer, passport_engine, pkd"), "{}", show(&out));
}

#[tokio::test]
async fn dev_postgres_start_status_stop() {
    let db = TestDb::start().await;
    // A second, CLI-managed cluster in this test's state dir.
    let env = [
        ("DB_HOST", ""),
        ("DB_PORT", ""),
        ("MARTY_ADMIN_DATABASE_URL", ""),
    ];
    let out = db.marty_with(&["dev", "postgres", "status"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let out = db.marty_with(&["dev", "postgres", "status", "--json"], &env);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], false, "{}", show(&out));
    let out = db.marty_with(&["dev", "postgres", "start"], &env);
    assert!(out.status.success(), "{}", show(&out));
    let state = marty_db::local::LocalPostgres::in_state_dir(&db.state_dir())
        .state()
        .unwrap()
        .unwrap();
    // The configuration now points at it, and the administrator logs in with a password.
    let shown = db.marty_with(&["config", "show", "--json"], &env);
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let admin_port = json["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "admin.port")
        .unwrap()
        .clone();
    assert_eq!(admin_port["value"], state.port.to_string());
    assert_eq!(admin_port["origin"]["kind"], "local_cluster");
    let hba = std::fs::read_to_string(db.state_dir().join("postgres/data/pg_hba.conf")).unwrap();
    let rules: Vec<&str> = hba
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(
        rules.iter().all(|l| l.ends_with("scram-sha-256")),
        "{rules:?}"
    );
    let out = db.marty_with(&["db", "setup", "--service", "csca"], &env);
    assert!(out.status.success(), "{}", show(&out));
    let out = db.marty_with(&["dev", "postgres", "status"], &env);
    assert!(
        stdout(&out).starts_with(&format!("running on 127.0.0.1:{}", state.port)),
        "{}",
        show(&out)
    );
    let out = db.marty_with(&["dev", "postgres", "stop"], &env);
    assert!(
        stdout(&out).starts_with("local PostgreSQL stopped"),
        "{}",
        show(&out)
    );
    // With the cluster stopped, the error says how to start it.
    let out = db.marty_with(&["db", "verify"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("`marty dev postgres start`"),
        "{}",
        show(&out)
    );

    let out = db.marty_with(
        &["dev", "postgres", "start"],
        &[("MARTY_PG_BIN_DIR", "/nonexistent")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("MARTY_PG_BIN_DIR=/nonexistent holds no pg_ctl and initdb"),
        "{}",
        show(&out)
    );
}
