//! `marty db split-legacy` end to end on a real server: a legacy shared database built by
//! `marty db legacy-fixture`, a dry run that changes nothing, a copy killed midway and resumed
//! to full parity, a service database written to behind the copy's back refused, and the
//! legacy tables' writes revoked once parity holds — proven by acting as the legacy role.

use std::process::{Command, Stdio};

use sqlx::Connection;

use crate::harness::{MartyCli, TestDb, show, stdout};

async fn count(db: &TestDb, database: &str, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(&mut db.admin_on(database).await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_legacy_resumes_after_a_kill_and_proves_parity() {
    let db = TestDb::start().await;
    db.provision();
    let out = db.marty(&["db", "legacy-fixture", "--rows", "60000"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        count(&db, "marty_dev", "passport_engine.validation_requests").await,
        24_000
    );
    assert_eq!(count(&db, "marty_dev", "csca.outbox").await, 7_500);
    // A second fixture would destroy the first: refused without --replace.
    let again = db.marty(&["db", "legacy-fixture", "--rows", "10"]);
    assert_eq!(again.status.code(), Some(1), "{}", show(&again));
    assert!(show(&again).contains("--replace"), "{}", show(&again));

    // A dry run reports and changes nothing.
    let out = db.marty(&["db", "split-legacy", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let engine = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "passport_engine")
        .unwrap();
    let requests = engine["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "validation_requests")
        .unwrap();
    assert_eq!(requests["action"], "would copy 24000 rows", "{requests}");
    assert_eq!(
        count(&db, "marty_passport_engine", "validation_requests").await,
        0
    );

    // Killed midway (small batches, so that the kill lands between commits)...
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marty"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in db.env() {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args([
            "db",
            "split-legacy",
            "--service",
            "passport_engine",
            "--batch-rows",
            "300",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as the first batches of the largest table are committed.
    let started = std::time::Instant::now();
    while count(&db, "marty_passport_engine", "validation_requests").await == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "split-legacy ended before it could be interrupted"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(120));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = count(&db, "marty_passport_engine", "validation_requests").await;
    assert!(
        partial > 0 && partial < 24_000,
        "killed after {partial} rows"
    );
    assert_eq!(
        partial % 300,
        0,
        "only whole batches are committed: {partial}"
    );

    // Ids the legacy sequence handed out may live on elsewhere (dead letters keep theirs):
    // the copy's sequences continue after the legacy sequence, not only after the rows.
    db.exec(
        "marty_dev",
        "select setval(pg_get_serial_sequence('csca.outbox', 'id'), 9000)",
    )
    .await;
    // ... and resumed: every table of every service reaches parity.
    let out = db.marty(&["db", "split-legacy", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in reports.as_array().unwrap() {
        assert_eq!(r["parity"], true, "{r}");
        for t in r["tables"].as_array().unwrap() {
            assert_eq!(t["legacy_checksum"], t["target_checksum"], "{t}");
        }
    }
    let engine = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "passport_engine")
        .unwrap();
    let requests = engine["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "validation_requests")
        .unwrap();
    assert_eq!(
        requests["rows_before"].as_i64(),
        Some(partial),
        "{requests}"
    );
    assert_eq!(requests["rows_copied"].as_i64(), Some(24_000 - partial));
    assert_eq!(
        count(&db, "marty_passport_engine", "validation_requests").await,
        24_000
    );
    assert_eq!(count(&db, "marty_pkd", "outbox").await, 7_500);
    // The identity sequence continues after the copied events.
    let next: i64 = sqlx::query_scalar(
        "insert into outbox (event_type, event_key, payload) values ('csca.test.event', 'k', '{}') returning id",
    )
    .fetch_one(&mut db.admin_on("marty_csca").await)
    .await
    .unwrap();
    assert_eq!(next, 9_001);
    db.exec("marty_csca", "delete from outbox where id = 9001")
        .await;

    // A service database written to outside the copy: refused, not silently merged.
    db.exec(
        "marty_pkd",
        "delete from outbox where id = (select min(id) from outbox)",
    )
    .await;
    let out = db.marty(&["db", "split-legacy", "--service", "pkd"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("written to outside split-legacy"),
        "{}",
        show(&out)
    );

    // With parity, the legacy tables lose their writers.
    db.exec("marty_pkd", "truncate outbox").await;
    db.exec(
        "postgres",
        "alter role marty_legacy_app login password 'legacy-pw'",
    )
    .await;
    let legacy_url = |db: &TestDb| {
        let c = db.config();
        let a = c.admin();
        format!(
            "postgres://marty_legacy_app:legacy-pw@{}:{}/marty_dev",
            a.host, a.port
        )
    };
    let mut legacy = sqlx::PgConnection::connect(&legacy_url(&db)).await.unwrap();
    sqlx::query(
        "insert into csca.outbox (event_type, event_key, payload) values ('csca.x.y', 'k', '{}')",
    )
    .execute(&mut legacy)
    .await
    .expect("before the split the legacy role writes");
    db.exec(
        "marty_dev",
        "delete from csca.outbox where event_type = 'csca.x.y'",
    )
    .await;
    // A writer by a column-level grant only, and one through membership in the legacy role.
    db.exec(
        "marty_dev",
        "create role legacy_reporter login password 'r'; grant update (last_error) on csca.outbox to legacy_reporter;
         create role legacy_member login password 'm' in role marty_legacy_app",
    )
    .await;
    let out = db.marty(&["db", "split-legacy", "--revoke-legacy-writes"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("revoked csca.outbox: INSERT from marty_legacy_app"),
        "{text}"
    );
    assert!(text.contains("every table has parity"), "{text}");
    let refused = sqlx::query(
        "insert into csca.outbox (event_type, event_key, payload) values ('csca.x.y', 'k', '{}')",
    )
    .execute(&mut legacy)
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    for (role, privilege) in [
        (
            "legacy_reporter",
            "has_column_privilege('legacy_reporter', 'csca.outbox', 'last_error', 'UPDATE')",
        ),
        (
            "legacy_member",
            "has_table_privilege('legacy_member', 'csca.outbox', 'INSERT')",
        ),
    ] {
        let can: bool = sqlx::query_scalar(&format!("select {privilege}"))
            .fetch_one(&mut db.admin_on("marty_dev").await)
            .await
            .unwrap();
        assert!(!can, "{role} can still write to the legacy table");
    }
    let rows: i64 = sqlx::query_scalar("select count(*) from csca.outbox")
        .fetch_one(&mut legacy)
        .await
        .expect("reading the legacy copy still works");
    assert_eq!(rows, 7_500);

    // The service databases stay what their migrations make.
    let out = db.marty(&["db", "drift"]);
    assert!(out.status.success(), "{}", show(&out));
}
