//! `marty db rotate-password` against a real server and a real `marty serve csca` process
//! under load: during the overlap the old and the new credential both log in (and `db verify`
//! stays green); the service takes the new one on SIGHUP without a restart; after `--finish`
//! only the new one logs in, the old sessions are gone, and no call failed throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::harness::{MartyCli, TestDb, TestNats, show};
use crate::services::{spawn_serve, terminate, wait_ready};

fn secrets(db: &TestDb) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(db.state_dir().join("secrets.json")).unwrap()).unwrap()
}

async fn login(db: &TestDb, user: &str, password: &str) -> Result<String, sqlx::Error> {
    let a = db.config().admin().clone();
    let mut conn = sqlx::PgConnection::connect_with(
        &sqlx::postgres::PgConnectOptions::new()
            .host(&a.host)
            .port(a.port)
            .username(user)
            .password(password)
            .database("marty_csca"),
    )
    .await?;
    let who: String = sqlx::query_scalar("select session_user::text")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok(who)
}

async fn sessions_of(db: &TestDb, user: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity where usename = $1 and datname = 'marty_csca'",
    )
    .bind(user)
    .fetch_one(&mut db.admin().await)
    .await
    .unwrap()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", show(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_rotation_keeps_a_running_service_serving() {
    let db = TestDb::start().await;
    db.provision();
    let nats = TestNats::start();
    let grpc = marty_events::local::free_port().unwrap();
    let http = marty_events::local::free_port().unwrap();
    let env: Vec<(String, String)> = [
        ("MARTY_NATS_URL", nats.url.clone()),
        ("MARTY_CSCA_GRPC_PORT", grpc.to_string()),
        ("MARTY_CSCA_HTTP_PORT", http.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("csca.log");
    let mut service = spawn_serve(&db, &env, "csca", &log);
    wait_ready(http, "csca", &log);

    // Calls that touch the database, all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, calls, failures) = (stop.clone(), calls.clone(), failures.clone());
        tokio::spawn(async move {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            let mut client =
                marty_proto::csca::v1::csca_service_client::CscaServiceClient::new(channel);
            let mut first_error = None;
            while !stop.load(Ordering::SeqCst) {
                let r = client
                    .list_certificates(marty_proto::csca::v1::ListCertificatesRequest::default())
                    .await;
                calls.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = r {
                    failures.fetch_add(1, Ordering::SeqCst);
                    first_error.get_or_insert(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            first_error
        })
    };
    wait_for("sessions of the service", async || {
        sessions_of(&db, "marty_csca_app").await > 0
    })
    .await;
    let old_password = secrets(&db)["passwords"]["marty_csca_app"]
        .as_str()
        .unwrap()
        .to_owned();

    // Step 1: both credentials work, and db verify stays green.
    let started = json(&db.marty(&[
        "db",
        "rotate-password",
        "--service",
        "csca",
        "--role",
        "app",
        "--json",
    ]));
    assert_eq!(started["old_login"], "marty_csca_app");
    assert_eq!(started["new_login"], "marty_csca_app_alt");
    assert_eq!(started["old_credential_works"], true);
    assert_eq!(started["new_credential_works"], true);
    assert!(
        !started["old_sessions"].as_array().unwrap().is_empty(),
        "{started}"
    );
    let file = secrets(&db);
    assert_eq!(file["logins"]["marty_csca_app"], "marty_csca_app_alt");
    let new_password = file["passwords"]["marty_csca_app_alt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_password, old_password);
    assert_eq!(
        login(&db, "marty_csca_app", &old_password).await.unwrap(),
        "marty_csca_app"
    );
    assert_eq!(
        login(&db, "marty_csca_app_alt", &new_password)
            .await
            .unwrap(),
        "marty_csca_app_alt"
    );
    let verify = db.marty(&["db", "verify"]);
    assert!(verify.status.success(), "{}", show(&verify));
    // A second start before finishing is refused.
    let again = db.marty(&[
        "db",
        "rotate-password",
        "--service",
        "csca",
        "--role",
        "app",
    ]);
    assert_eq!(again.status.code(), Some(1), "{}", show(&again));
    assert!(show(&again).contains("in progress"), "{}", show(&again));

    // The running service takes the new credential on SIGHUP and retires the old sessions.
    std::process::Command::new("kill")
        .args(["-HUP", &service.id().to_string()])
        .status()
        .unwrap();
    wait_for("sessions of the alternate login", async || {
        sessions_of(&db, "marty_csca_app_alt").await > 0
    })
    .await;

    // Step 2: the old credential is removed and proven refused; its sessions are ended.
    let finished = json(&db.marty(&[
        "db",
        "rotate-password",
        "--service",
        "csca",
        "--role",
        "app",
        "--finish",
        "--terminate-old-sessions",
        "--json",
    ]));
    assert_eq!(finished["removed_login"], "marty_csca_app");
    assert_eq!(finished["new_credential_works"], true);
    assert!(
        finished["old_credential"]
            .as_str()
            .unwrap()
            .starts_with("refused"),
        "{finished}"
    );
    assert!(login(&db, "marty_csca_app", &old_password).await.is_err());
    assert!(
        login(&db, "marty_csca_app_alt", &new_password)
            .await
            .is_ok()
    );
    wait_for("the old sessions to end", async || {
        sessions_of(&db, "marty_csca_app").await == 0
    })
    .await;
    // The service keeps serving on the new credential.
    let before = calls.load(Ordering::SeqCst);
    wait_for("more calls", async || {
        calls.load(Ordering::SeqCst) > before + 20
    })
    .await;
    // setup and verify agree with the rotated model (setup changes nothing about it).
    let setup = db.marty(&["db", "setup"]);
    assert!(setup.status.success(), "{}", show(&setup));
    assert!(login(&db, "marty_csca_app", &old_password).await.is_err());
    let verify = db.marty(&["db", "verify"]);
    assert!(verify.status.success(), "{}", show(&verify));

    // And back: the credential returns to the role itself, the alternate loses its own.
    let back = json(&db.marty(&[
        "db",
        "rotate-password",
        "--service",
        "csca",
        "--role",
        "app",
        "--json",
    ]));
    assert_eq!(back["new_login"], "marty_csca_app");
    std::process::Command::new("kill")
        .args(["-HUP", &service.id().to_string()])
        .status()
        .unwrap();
    wait_for("sessions of the role again", async || {
        sessions_of(&db, "marty_csca_app").await > 0
    })
    .await;
    let done = json(&db.marty(&[
        "db",
        "rotate-password",
        "--service",
        "csca",
        "--role",
        "app",
        "--finish",
        "--terminate-old-sessions",
        "--json",
    ]));
    assert_eq!(done["removed_login"], "marty_csca_app_alt");
    assert!(
        login(&db, "marty_csca_app_alt", &new_password)
            .await
            .is_err()
    );
    let file = secrets(&db);
    assert!(
        file["passwords"].get("marty_csca_app_alt").is_none(),
        "{file}"
    );
    assert!(file.get("logins").is_none(), "{file}");

    stop.store(true, Ordering::SeqCst);
    let first_error = load.await.unwrap();
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "calls failed during the rotation: {first_error:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(calls.load(Ordering::SeqCst) > 50);
    assert!(terminate(&mut service).success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("database credential changed"), "{logged}");
    assert!(!logged.contains(&new_password) && !logged.contains(&old_password));
}
