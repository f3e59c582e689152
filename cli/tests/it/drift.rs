//! `marty db drift` against a real server: clean after setup and migrate; an edited migration,
//! a hand-added column, a dropped index and a hand-granted privilege each reported on its own
//! line with exit 1.

use crate::harness::{MartyCli, TestDb, show, stdout};

#[tokio::test]
async fn the_drift_gate_is_clean_after_migrate_and_names_each_change() {
    let db = TestDb::start().await;
    db.provision();
    let out = db.marty(&["db", "drift"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        stdout(&out).matches(": no drift").count(),
        4,
        "{}",
        show(&out)
    );

    db.exec(
        "marty_csca",
        "update _sqlx_migrations set checksum = '\\x00' where version = (select min(version) from _sqlx_migrations)",
    )
    .await;
    db.exec("marty_pkd", "alter table outbox add column note text")
        .await;
    db.exec("marty_csca", "alter table outbox enable row level security")
        .await;
    // A role setting the gate has no business changing (roles are setup's).
    db.exec("postgres", "alter role marty_csca_app connection limit 7")
        .await;
    db.exec(
        "marty_passport_engine",
        "drop index pe_validation_requests_sod_sha256_ix",
    )
    .await;
    db.exec(
        "marty_document_signer",
        "grant select on outbox to marty_csca_readonly",
    )
    .await;

    let out = db.marty(&["db", "drift"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let has = |prefix: &str, needle: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(needle))
    };
    assert!(
        has(
            "csca: migrations: ",
            "checksum changed: an applied migration was edited"
        ),
        "{text}"
    );
    assert!(
        has("csca: schema: table public.outbox: ", "row level security"),
        "{text}"
    );
    assert!(
        has(
            "pkd: schema: column public.outbox.note: ",
            "not made by any migration"
        ),
        "{text}"
    );
    assert!(
        has(
            "passport_engine: schema: index public.pe_validation_requests_sod_sha256_ix: ",
            "missing"
        ),
        "{text}"
    );
    assert!(
        has(
            "document_signer: privileges: grants on public.outbox: ",
            "marty_csca_readonly=r"
        ),
        "{text}"
    );
    // Nothing else: each change is one finding (the hand grant may also be named by the role
    // model's own audit, which is the same change seen from the policy).
    for l in &lines {
        assert!(
            l.starts_with("csca: migrations: ")
                || l.starts_with("csca: schema: table public.outbox: ")
                || l.starts_with("pkd: schema: column public.outbox.note")
                || l.starts_with(
                    "passport_engine: schema: index public.pe_validation_requests_sod_sha256_ix"
                )
                || (l.starts_with("document_signer: privileges: ")
                    && l.contains("marty_csca_readonly")),
            "unexpected finding: {l}\n{text}"
        );
    }

    let out = db.marty(&["db", "drift", "--service", "pkd", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["service"], "pkd");
    assert_eq!(json[0]["findings"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json[0]["findings"][0]["area"], "schema");

    let mut admin = db.admin().await;
    let limit: i32 =
        sqlx::query_scalar("select rolconnlimit from pg_roles where rolname = 'marty_csca_app'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(limit, 7, "the drift gate changed a role");
    drop(admin);

    // The reference databases are gone.
    let mut admin = db.admin().await;
    let left: Vec<String> = sqlx::query_scalar(
        "select datname::text from pg_database where datname like 'marty\\_drift%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
}
