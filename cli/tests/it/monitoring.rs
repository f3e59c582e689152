//! Monitoring as an operator's Prometheus meets it: a real service's `/metrics` carries the
//! database figures (size, sessions per role, pending migrations, pool saturation and wait,
//! the age of the last backup that `marty db backup` recorded), `marty db status` shows the
//! same, `marty db verify --metrics-file` writes the isolation figures, and every metric the
//! shipped alert rules and dashboard use exists — the rules checked and unit-tested by promtool.

use std::collections::BTreeSet;
use std::path::Path;

use marty_testkit::tools::{curl, promtool, repo};
use marty_testkit::{TestNats, spawn_app};

use crate::harness::{MartyCli, TestDb, show, stdout};

/// The value of the first sample of `metric` whose labels contain `labels`.
fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| {
            name.split('{').next() == Some(metric) && (labels.is_empty() || name.contains(labels))
        })
        .and_then(|(_, v)| v.parse().ok())
}

/// Names of the series a text exposition defines (histograms by their family name too).
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            names.insert(rest.split(' ').next().unwrap().to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            names.insert(line.split(['{', ' ']).next().unwrap().to_owned());
        }
    }
    names
}

/// The `marty_*` metric names an alert rule file or dashboard refers to.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("marty_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        // Not metrics: the dashboard's uid and tags, Grafana's `marty_` text in titles.
        if name.len() > "marty_".len() && !rest[..at].ends_with(['-', '/']) {
            names.insert(name.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn run(cmd: &mut std::process::Command) -> std::process::Output {
    cmd.output().expect("running a tool")
}

// Multi-threaded: the service runs in this process while curl and marty block the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_status_and_alerts_show_what_an_operator_must_see() {
    let db = TestDb::start().await;
    db.provision();
    let nats = TestNats::start();
    let app = spawn_app(&marty_csca::DESCRIPTOR, db.service_env(&nats, &[]))
        .await
        .unwrap();
    let port = app.http_port.to_string();
    let csca_http = [("MARTY_CSCA_HTTP_PORT", port.as_str())];

    // Before any backup: the age is +Inf (the alert's "never"), no timestamp.
    let (status, before) = curl(&app.http_url("/metrics"));
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        sample(&before, "marty_backup_age_seconds", "service=\"csca\""),
        Some(f64::INFINITY),
        "{before}"
    );
    assert!(!before.contains("marty_backup_last_success_timestamp_seconds{"));

    // A backup is recorded in the service's own database, and the service reports its age.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("backups");
    db.marty_ok(&[
        "db",
        "backup",
        "--service",
        "csca",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    // One RPC, so that the pool has been waited on by a handler.
    let mut client = app.csca().await;
    client
        .list_certificates(marty_proto::csca::v1::ListCertificatesRequest::default())
        .await
        .unwrap();
    let (_, metrics) = curl(&app.http_url("/metrics"));
    let age = sample(&metrics, "marty_backup_age_seconds", "service=\"csca\"").unwrap();
    assert!((0.0..120.0).contains(&age), "backup age {age}\n{metrics}");
    let at = sample(&metrics, "marty_backup_last_success_timestamp_seconds", "").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - at).abs() < 120.0, "{at} vs {now}");
    assert!(sample(&metrics, "marty_db_size_bytes", "").unwrap() > 1_000_000.0);
    assert!(
        sample(&metrics, "marty_db_connections", "role=\"marty_csca_app\"").unwrap() >= 1.0,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "marty_migrations_pending", ""), Some(0.0));
    let max = sample(&metrics, "marty_db_pool_max_connections", "").unwrap();
    assert!(max >= 1.0);
    let saturation = sample(&metrics, "marty_db_pool_saturation", "").unwrap();
    assert!((0.0..=1.0).contains(&saturation), "{saturation}");
    assert!(sample(&metrics, "marty_db_pool_wait_seconds_count", "").unwrap() >= 1.0);

    // `marty db status` shows the same facts: backup, outbox, the running service's pool.
    let out = db.marty_with(&["db", "status", "--json"], &csca_http);
    assert!(out.status.success(), "{}", show(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let csca = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "csca")
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("csca/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(csca["last_backup"]["dump_sha256"], manifest["dump_sha256"]);
    assert!(csca["last_backup"]["age_seconds"].as_f64().unwrap() < 120.0);
    assert_eq!(csca["outbox"]["backlog"].as_i64(), Some(0), "{csca}");
    assert_eq!(csca["pool"]["max"].as_f64(), Some(max), "{csca}");
    let pkd = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "pkd")
        .unwrap();
    assert!(
        pkd["last_backup"].is_null() && pkd["pool"].is_null(),
        "{pkd}"
    );
    let text = stdout(&db.marty_with(&["db", "status"], &csca_http));
    assert!(text.contains("last backup: never"), "{text}");
    assert!(text.contains(" ago, marty_csca.dump)"), "{text}");
    assert!(text.contains("service not running"), "{text}");

    // The app role can read the history but not forge it.
    let forged = sqlx::query(
        "insert into marty_backup_history values (now(), now(), 'x', 'x', 0, 0, 0, 'x')",
    )
    .execute(&mut app_connection(&db).await)
    .await;
    assert!(
        forged
            .unwrap_err()
            .to_string()
            .contains("permission denied"),
        "the app role must not write the backup history"
    );

    // The isolation figures for the periodic job.
    let metrics_file = dir.path().join("isolation.prom");
    let out = db.marty(&[
        "db",
        "verify",
        "--metrics-file",
        metrics_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let isolation = std::fs::read_to_string(&metrics_file).unwrap();
    assert_eq!(
        sample(&isolation, "marty_isolation_verified", ""),
        Some(1.0),
        "{isolation}"
    );
    assert!(
        (now - sample(&isolation, "marty_isolation_last_run_timestamp_seconds", "").unwrap()).abs()
            < 600.0
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&metrics_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    // A violation flips the figure and the exit code.
    db.exec("marty_pkd", "grant connect on database marty_pkd to public")
        .await;
    let out = db.marty(&[
        "db",
        "verify",
        "--metrics-file",
        metrics_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let isolation_after = std::fs::read_to_string(&metrics_file).unwrap();
    assert_eq!(
        sample(&isolation_after, "marty_isolation_verified", ""),
        Some(0.0),
        "{isolation_after}"
    );

    // Every metric the alert rules and the dashboard use is one Marty exports.
    let mut available = exposed(&metrics);
    available.extend(exposed(&isolation));
    for family in available.clone() {
        for suffix in ["_bucket", "_sum", "_count"] {
            available.insert(format!("{family}{suffix}"));
        }
    }
    let alerts = repo().join("deploy/prometheus/alerts.yml");
    let dashboard = repo().join("deploy/grafana/marty.json");
    for file in [&alerts, &dashboard] {
        let text = std::fs::read_to_string(file).unwrap();
        let used = referenced(&text);
        assert!(used.len() >= 8, "{}: {used:?}", file.display());
        let unknown: Vec<_> = used.difference(&available).collect();
        assert!(
            unknown.is_empty(),
            "{} uses metrics no service exports: {unknown:?}",
            file.display()
        );
    }
    let board: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dashboard).unwrap()).unwrap();
    assert!(board["panels"].as_array().unwrap().len() >= 10);
    app.stop().await.unwrap();

    // The rules are valid PromQL and fire (or stay silent) as their unit tests say.
    check_rules(&alerts);
}

async fn app_connection(db: &TestDb) -> sqlx::PgConnection {
    let config = db.config();
    marty_db::ConnectTarget::role(
        config.database(marty_config::Service::Csca),
        marty_config::Role::App,
    )
    .unwrap()
    .connect()
    .await
    .unwrap()
}

fn check_rules(alerts: &Path) {
    let tool = promtool();
    let out = run(std::process::Command::new(&tool)
        .args(["check", "rules"])
        .arg(alerts));
    assert!(out.status.success(), "{}", show(&out));
    let out = run(std::process::Command::new(&tool)
        .current_dir(alerts.parent().unwrap())
        .args(["test", "rules", "alerts.test.yml"]));
    assert!(out.status.success(), "{}", show(&out));
}
