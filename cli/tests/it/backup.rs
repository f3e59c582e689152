//! `marty db backup`, `backup verify` and `restore` against a real server: every service's
//! database backed up, dropped, restored with equal checksums and isolation intact; corrupted,
//! foreign and tampered backups refused with the reason.

use std::path::{Path, PathBuf};

use marty_config::{Role, Service};

use crate::harness::{MartyCli, TestDb, show, stdout};

/// Rows in every service's outbox (the one table all four have), written as the app role.
async fn fill(db: &TestDb, service: Service, rows: usize) {
    let config = db.config();
    let mut conn = marty_db::connect_role(config.database(service), Role::App)
        .await
        .unwrap();
    for i in 0..rows {
        let event = marty_events::NewEvent::new(
            format!("{}.backup.test", service.id()),
            format!("key-{}", i % 7),
            serde_json::json!({ "i": i, "text": "Grüße, ﬁ ✓", "nested": { "n": i * 3 } }),
        );
        marty_events::outbox::enqueue(&mut conn, service, &event)
            .await
            .unwrap();
    }
}

fn dump_of(dir: &Path, service: Service) -> PathBuf {
    dir.join(service.id())
        .join(format!("{}.dump", service.default_database()))
}

fn manifests(dir: &Path) -> serde_json::Value {
    serde_json::Value::Array(
        Service::ALL
            .iter()
            .map(|s| {
                serde_json::from_slice(
                    &std::fs::read(dir.join(s.id()).join("manifest.json")).unwrap(),
                )
                .unwrap()
            })
            .collect(),
    )
}

fn sha256_file(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

async fn databases_like(db: &TestDb, pattern: &str) -> Vec<String> {
    let mut admin = db.admin().await;
    sqlx::query_scalar("select datname::text from pg_database where datname like $1")
        .bind(pattern)
        .fetch_all(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn backup_drop_restore_every_service_and_refuse_bad_dumps() {
    let db = TestDb::start().await;
    db.provision();
    for (i, service) in Service::ALL.into_iter().enumerate() {
        fill(&db, service, 150 + 50 * i).await;
    }
    // A grant made by hand in the source database must not survive a restore.
    db.exec("marty_csca", "grant select on outbox to marty_pkd_readonly")
        .await;

    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let out = db.marty(&["db", "backup", "--out", first.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, manifests(&first));
    for (i, service) in Service::ALL.into_iter().enumerate() {
        let m = &printed[i];
        assert_eq!(m["service"], service.id());
        let dump = dump_of(&first, service);
        // The manifest's digest and size are the file's; pg_restore itself reads the dump.
        assert_eq!(m["dump_sha256"], sha256_file(&dump));
        assert_eq!(m["dump_bytes"], std::fs::metadata(&dump).unwrap().len());
        let outbox = m["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "public.outbox")
            .unwrap();
        assert_eq!(outbox["rows"], 150 + 50 * i as i64, "{m}");
        assert!(m["migration_version"].as_i64().unwrap() > 0);
        let list =
            std::process::Command::new(marty_db::backup::client_program("pg_restore").unwrap())
                .arg("--list")
                .arg(&dump)
                .output()
                .unwrap();
        assert!(list.status.success(), "{}", show(&list));
        assert!(stdout(&list).contains("TABLE DATA public outbox"));
        // Only the owner reads a dump (it holds sealed keys and personal data).
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dump).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No partial file is left behind.
        assert!(!dump.with_extension("dump.partial").exists());
    }

    // A good backup verifies, and its scratch database is gone afterwards.
    let csca_dump = dump_of(&first, Service::Csca);
    let out = db.marty(&["db", "backup", "verify", csca_dump.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("holds what its manifest says"),
        "{}",
        show(&out)
    );
    assert_eq!(
        databases_like(&db, "marty\\_verify%").await,
        Vec::<String>::new()
    );

    // Restoring over an existing database needs --force; without it nothing changes.
    let out = db.marty(&[
        "db",
        "restore",
        "--service",
        "csca",
        "--from",
        csca_dump.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("exists; restoring replaces it only with --force"),
        "{}",
        show(&out)
    );

    // Every service: drop its database, restore it, checksums equal.
    for service in Service::ALL {
        let database = service.default_database();
        db.exec(
            "postgres",
            &format!("drop database {database} with (force)"),
        )
        .await;
        let dump = dump_of(&first, service);
        let out = db.marty(&[
            "db",
            "restore",
            "--service",
            service.id(),
            "--from",
            dump.to_str().unwrap(),
            "--json",
        ]);
        assert!(out.status.success(), "{}", show(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["manifest_checked"], true);
        assert_eq!(report["replaced"], false);
        assert_eq!(report["pending_migrations"], 0);
    }
    let second = tmp.path().join("second");
    db.marty_ok(&["db", "backup", "--out", second.to_str().unwrap()]);
    let (a, b) = (manifests(&first), manifests(&second));
    for i in 0..Service::ALL.len() {
        assert_eq!(a[i]["tables"], b[i]["tables"], "{}", Service::ALL[i]);
        assert_eq!(a[i]["migration_version"], b[i]["migration_version"]);
    }
    // The restored databases carry the role model: the isolation proof holds, the hand-made
    // grant did not come back, and the services' roles work.
    let out = db.marty(&["db", "verify"]);
    assert!(out.status.success(), "{}", show(&out));
    // ... and the drift gate finds them as the migrations make them (a dump's round trip
    // re-parses CHECK constraints: not drift).
    let out = db.marty(&["db", "drift"]);
    assert!(out.status.success(), "{}", show(&out));
    // The service's app role reads its migration history (a service checks it at start).
    for service in Service::ALL {
        let mut app = marty_db::connect_role(db.config().database(service), Role::App)
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
            .fetch_one(&mut app)
            .await
            .unwrap();
        assert!(n > 0, "{service}");
        assert!(
            sqlx::query("delete from _sqlx_migrations")
                .execute(&mut app)
                .await
                .is_err(),
            "{service}: the app role must not rewrite the history"
        );
    }
    let mut csca = db.admin_on("marty_csca").await;
    let leaked: bool = sqlx::query_scalar(
        "select has_table_privilege('marty_pkd_readonly', 'public.outbox', 'SELECT')",
    )
    .fetch_one(&mut csca)
    .await
    .unwrap();
    assert!(!leaked);
    drop(csca);
    fill(&db, Service::Csca, 1).await;

    // --force replaces the database in place (a session on it is ended).
    let mut holder = marty_db::connect_role(db.config().database(Service::Csca), Role::App)
        .await
        .unwrap();
    let out = db.marty(&[
        "db",
        "restore",
        "--service",
        "csca",
        "--from",
        csca_dump.to_str().unwrap(),
        "--force",
        "--json",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replaced"], true);
    assert!(sqlx::query("select 1").execute(&mut holder).await.is_err());
    let mut csca = db.admin_on("marty_csca").await;
    let rows: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&mut csca)
        .await
        .unwrap();
    assert_eq!(
        rows, 150,
        "the restored rows, without the one written after the backup"
    );
    drop(csca);
    assert_eq!(
        databases_like(&db, "%\\_\\_re%").await,
        Vec::<String>::new()
    );

    // A corrupted dump: verify names it, restore refuses it and keeps the database.
    let bad = tmp.path().join("corrupt");
    std::fs::create_dir_all(bad.join("csca")).unwrap();
    std::fs::copy(
        first.join("csca/manifest.json"),
        bad.join("csca/manifest.json"),
    )
    .unwrap();
    let mut bytes = std::fs::read(&csca_dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let bad_dump = bad.join("csca/marty_csca.dump");
    std::fs::write(&bad_dump, &bytes).unwrap();
    let out = db.marty(&["db", "backup", "verify", bad_dump.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("the file is corrupted"),
        "{}",
        show(&out)
    );
    let out = db.marty(&[
        "db",
        "restore",
        "--service",
        "csca",
        "--from",
        bad_dump.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("the file is corrupted"),
        "{}",
        show(&out)
    );

    // Another service's dump: by its manifest, and by its contents alone.
    let pkd_dump = dump_of(&first, Service::Pkd);
    let out = db.marty(&[
        "db",
        "restore",
        "--service",
        "csca",
        "--from",
        pkd_dump.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("is a backup of pkd's database"),
        "{}",
        show(&out)
    );
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    let renamed = foreign.join("marty_csca.dump");
    std::fs::copy(&pkd_dump, &renamed).unwrap();
    let out = db.marty(&[
        "db",
        "restore",
        "--service",
        "csca",
        "--from",
        renamed.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("this is a dump of another service's database"),
        "{}",
        show(&out)
    );
    assert_eq!(
        databases_like(&db, "%\\_\\_re%").await,
        Vec::<String>::new()
    );
    // A dump never goes into another service's database.
    let out = db.marty(&[
        "db",
        "restore",
        "--service",
        "csca",
        "--from",
        csca_dump.to_str().unwrap(),
        "--into",
        "marty_pkd",
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(show(&out).contains("pkd's database"), "{}", show(&out));

    // A dump whose schema was changed by hand (a trigger that runs on every write) is refused
    // before it replaces anything, though its data matches its manifest.
    db.exec(
        "marty_document_signer",
        "create function audit_leak() returns trigger language plpgsql as $$ begin return new; end $$;
         create trigger leak before insert on outbox for each row execute function audit_leak()",
    )
    .await;
    let tampered = tmp.path().join("tampered");
    let out = db.marty(&[
        "db",
        "backup",
        "--service",
        "document_signer",
        "--out",
        tampered.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    db.exec(
        "marty_document_signer",
        "drop trigger leak on outbox; drop function audit_leak()",
    )
    .await;
    let out = db.marty(&[
        "db",
        "restore",
        "--service",
        "document_signer",
        "--from",
        dump_of(&tampered, Service::DocumentSigner)
            .to_str()
            .unwrap(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("not what this build's migrations make") && text.contains("leak"),
        "{text}"
    );
    let triggers: i64 = sqlx::query_scalar("select count(*) from pg_trigger where tgname = 'leak'")
        .fetch_one(&mut db.admin_on("marty_document_signer").await)
        .await
        .unwrap();
    assert_eq!(triggers, 0, "the live database must be untouched");
    assert_eq!(
        databases_like(&db, "%\\_\\_re%").await,
        Vec::<String>::new()
    );

    // A manifest whose table checksum was altered: verify names the table.
    let edited = tmp.path().join("edited");
    std::fs::create_dir_all(edited.join("csca")).unwrap();
    std::fs::copy(&csca_dump, edited.join("csca/marty_csca.dump")).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("csca/manifest.json")).unwrap()).unwrap();
    for t in m["tables"].as_array_mut().unwrap() {
        if t["table"] == "public.outbox" {
            t["checksum"] = "12345".into();
        }
    }
    std::fs::write(
        edited.join("csca/manifest.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let out = db.marty(&[
        "db",
        "backup",
        "verify",
        edited.join("csca/marty_csca.dump").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        check["findings"],
        serde_json::json!([
            "table public.outbox: content checksum differs from the manifest (150 rows each)"
        ])
    );

    // Every table of the services' schemas is summed by its values' hashes.
    for t in printed[0]["tables"].as_array().unwrap() {
        assert_eq!(t["method"], "row-hash64", "{t}");
    }
    // A manifest from before the method was recorded (MD5 over each row's text) still
    // verifies: each table is summed again the way its manifest says. The live CSCA database
    // holds the first backup's rows again (restored with --force above).
    let mut old = m.clone();
    let mut csca = db.admin_on("marty_csca").await;
    sqlx::raw_sql(
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';
         SET bytea_output = 'hex'; SET extra_float_digits = 1",
    )
    .execute(&mut csca)
    .await
    .unwrap();
    for t in old["tables"].as_array_mut().unwrap() {
        let name = t["table"].as_str().unwrap().to_owned();
        let md5: String = sqlx::query_scalar(&format!(
            "select coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)::text from only {name} t"
        ))
        .fetch_one(&mut csca)
        .await
        .unwrap();
        let t = t.as_object_mut().unwrap();
        t.remove("method");
        t.insert("checksum".into(), md5.into());
    }
    drop(csca);
    let verify_with = |manifest: &serde_json::Value| {
        std::fs::write(
            edited.join("csca/manifest.json"),
            serde_json::to_vec(manifest).unwrap(),
        )
        .unwrap();
        db.marty(&[
            "db",
            "backup",
            "verify",
            edited.join("csca/marty_csca.dump").to_str().unwrap(),
            "--json",
        ])
    };
    let out = verify_with(&old);
    assert!(out.status.success(), "{}", show(&out));
    // ... and the method is not decoration: the hash sums read as MD5 sums differ.
    let mut mislabelled = printed[0].clone();
    for t in mislabelled["tables"].as_array_mut().unwrap() {
        t["method"] = "md5-text".into();
    }
    let out = verify_with(&mislabelled);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("table public.outbox: content checksum differs"),
        "{}",
        show(&out)
    );

    // A column type without a hash function (point) is summed by its text form instead, and
    // its backup verifies.
    db.exec(
        "marty_pkd",
        "create table hand_points (id int, p point);
         insert into hand_points values (1, '(1,2)'), (2, '(3.5,-4)');
         grant select on hand_points to marty_pkd_readonly",
    )
    .await;
    let points = tmp.path().join("points");
    let out = db.marty(&[
        "db",
        "backup",
        "--service",
        "pkd",
        "--out",
        points.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    db.exec("marty_pkd", "drop table hand_points").await;
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let method = |table: &str| {
        printed[0]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap()["method"]
            .clone()
    };
    assert_eq!(method("public.hand_points"), "md5-text", "{printed}");
    assert_eq!(method("public.outbox"), "row-hash64", "{printed}");
    let out = db.marty(&[
        "db",
        "backup",
        "verify",
        dump_of(&points, Service::Pkd).to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));

    // The reference schema a restore compares with is built once per binary, migrations,
    // role model and server, and kept private in the state directory.
    let cached: Vec<_> = std::fs::read_dir(db.state_dir().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("reference-csca-")
        })
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cached[0]).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // Restore under another name: a copy with the role model, beside the live database.
    let out = db.marty(&[
        "db",
        "restore",
        "--service",
        "csca",
        "--from",
        csca_dump.to_str().unwrap(),
        "--into",
        "marty_csca_copy",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let mut copy =
        marty_db::ConnectTarget::role(db.config().database(Service::Csca), Role::Readonly)
            .unwrap()
            .with_database("marty_csca_copy")
            .connect()
            .await
            .unwrap();
    let rows: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&mut copy)
        .await
        .unwrap();
    assert_eq!(rows, 150);
}
