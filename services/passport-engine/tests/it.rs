//! The platform as its users meet it: the four services on port 0, each on its own database,
//! real NATS. A passport issued by the engine (the Document Signer signs, the CSCA certified
//! its signer) verifies through the engine with trust material the PKD learnt by event;
//! tampering, revocation, the German master list and the PKD's absence each get the verdict
//! a border-control operator must be able to rely on.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use marty_proto::csca::v1 as csca_pb;
use marty_proto::passport::v1 as pb;
use marty_proto::pkd::v1 as pkd_pb;
use marty_proto::signer::v1 as signer_pb;
use marty_testkit::tools::{curl, repo};
use marty_testkit::{TestApp, TestDb, TestNats, spawn_app};
use tonic::Code;

struct Platform {
    db: TestDb,
    nats: TestNats,
    csca: TestApp,
    signer: TestApp,
    pkd: Option<TestApp>,
    engine: TestApp,
}

fn vectors(path: &str) -> Vec<u8> {
    std::fs::read(repo().join("../shared/vectors").join(path)).unwrap()
}

async fn platform() -> Platform {
    let db = TestDb::start().await;
    db.provision_services(&[
        &marty_csca::DESCRIPTOR,
        &marty_document_signer::DESCRIPTOR,
        &marty_pkd::DESCRIPTOR,
        &marty_passport_engine::DESCRIPTOR,
    ])
    .await;
    let nats = TestNats::start();
    let csca = spawn_app(&marty_csca::DESCRIPTOR, db.service_env(&nats, &[]))
        .await
        .unwrap();
    let csca_url = csca.grpc_url();
    let signer = spawn_app(
        &marty_document_signer::DESCRIPTOR,
        db.service_env(&nats, &[("MARTY_CSCA_URL", &csca_url)]),
    )
    .await
    .unwrap();
    // The PKD asks the CSCA to confirm what events claim about CSCAs.
    let pkd = spawn_app(
        &marty_pkd::DESCRIPTOR,
        db.service_env(&nats, &[("MARTY_CSCA_URL", &csca_url)]),
    )
    .await
    .unwrap();
    let engine = spawn_engine(&db, &nats, &signer, &pkd.grpc_url()).await;
    csca.csca()
        .await
        .create_csca(csca_pb::CreateCscaRequest {
            country: "UT".into(),
            key_spec: "ec:P-256:named".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    signer
        .signer()
        .await
        .create_signer(signer_pb::CreateSignerRequest {
            country: "UT".into(),
            key_spec: "ec:P-256:named".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    Platform {
        db,
        nats,
        csca,
        signer,
        pkd: Some(pkd),
        engine,
    }
}

async fn spawn_engine(db: &TestDb, nats: &TestNats, signer: &TestApp, pkd_url: &str) -> TestApp {
    let signer_url = signer.grpc_url();
    spawn_app(
        &marty_passport_engine::DESCRIPTOR,
        db.service_env(
            nats,
            &[
                ("MARTY_DOCUMENT_SIGNER_URL", &signer_url),
                ("MARTY_PKD_URL", pkd_url),
            ],
        ),
    )
    .await
    .unwrap()
}

fn holder() -> pb::IssuePassportRequest {
    pb::IssuePassportRequest {
        holder: Some(pb::Holder {
            primary_identifier: "Eriksson".into(),
            secondary_identifier: "Anna Maria".into(),
            nationality: "UTO".into(),
            date_of_birth: "1974-08-12".into(),
            sex: "F".into(),
        }),
        date_of_expiry: (time::OffsetDateTime::now_utc().date() + time::Duration::days(3650))
            .to_string(),
        document_type: "P".into(),
        document_number: String::new(),
        face_image: std::fs::read(repo().join("samples/face.jpg")).unwrap(),
    }
}

fn file<'a>(p: &'a pb::Passport, name: &str) -> &'a [u8] {
    &p.files.iter().find(|f| f.name == name).unwrap().content
}

fn verify_request(p: &pb::Passport) -> pb::VerifyPassportRequest {
    pb::VerifyPassportRequest {
        ef_sod: file(p, "EF.SOD").to_vec(),
        data_groups: vec![file(p, "DG1").to_vec(), file(p, "DG2").to_vec()],
        at: None,
    }
}

impl Platform {
    fn pkd(&self) -> &TestApp {
        self.pkd.as_ref().unwrap()
    }

    /// Waits until the PKD holds what `ready` accepts of UT's trust material.
    async fn pkd_has(
        &self,
        what: &str,
        ready: impl Fn(&pkd_pb::TrustMaterial) -> bool,
    ) -> pkd_pb::TrustMaterial {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self
                .pkd()
                .pkd()
                .await
                .get_trust_material(pkd_pb::GetTrustMaterialRequest {
                    country: "UT".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if ready(&m) {
                return m;
            }
            let summary: Vec<_> = m
                .cscas
                .iter()
                .chain(&m.links)
                .map(|c| (c.kind.as_str(), c.serial_hex.as_str(), c.revoked))
                .collect();
            assert!(
                Instant::now() < deadline,
                "the PKD never learnt {what}: certificates {summary:?}, {} CRLs",
                m.crls.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn issue(&self) -> pb::Passport {
        self.engine
            .passport()
            .await
            .issue_passport(holder())
            .await
            .unwrap()
            .into_inner()
    }

    async fn verify(&self, r: pb::VerifyPassportRequest) -> pb::VerificationReport {
        self.engine
            .passport()
            .await
            .verify_passport(r)
            .await
            .unwrap()
            .into_inner()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_verify_tamper_revoke() {
    let p = platform().await;
    p.pkd_has("the CSCA and its CRL", |m| {
        !m.cscas.is_empty() && !m.crls.is_empty()
    })
    .await;
    let passport = p.issue().await;
    assert_eq!(passport.issuing_state, "UTO");
    assert!(
        passport.mrz.starts_with("P<UTOERIKSSON<<ANNA<MARIA"),
        "{}",
        passport.mrz
    );
    let names: Vec<_> = passport.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["EF.COM", "DG1", "DG2", "EF.SOD"]);

    let report = p.verify(verify_request(&passport)).await;
    assert_eq!(report.verdict, "VALID", "{}", report.report_json);
    assert!(!report.trust_version.is_empty());
    assert!(
        !report.chain_from_cache,
        "the first verification checks the path"
    );
    let first_version = report.trust_version.clone();

    // One byte of DG1 changed: INVALID, naming DG1.
    let mut tampered = verify_request(&passport);
    let last = tampered.data_groups[0].len() - 1;
    tampered.data_groups[0][last] ^= 0x01;
    let report = p.verify(tampered).await;
    assert_eq!(report.verdict, "INVALID", "{}", report.report_json);
    // The same DSC under the same trust material: the warm path, and the report says so.
    assert!(report.chain_from_cache, "{}", report.report_json);
    assert_eq!(report.trust_version, first_version);
    assert!(
        report
            .report_json
            .contains("verified before against the same trust material")
    );
    let json: serde_json::Value = serde_json::from_str(&report.report_json).unwrap();
    let dg1 = json["data_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["number"] == 1)
        .unwrap();
    assert_ne!(dg1["status"], "match", "{dg1}");

    // Each verification is recorded in the engine's database, linked to the passport issued
    // here only when its EF.SOD is the one stored (the tampered DG1 keeps the same EF.SOD).
    let mut conn = p.db.admin_on("marty_passport_engine").await;
    let recorded: Vec<(String, Option<String>)> = sqlx::query_as(
        "select verdict, passport_id::text from validation_requests order by requested_at",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        recorded,
        [
            ("VALID".to_owned(), Some(passport.id.clone())),
            ("INVALID".to_owned(), Some(passport.id.clone()))
        ]
    );
    // ListVerifications pages through the same records, newest first, with their checks and
    // nothing of the holder.
    let mut client = p.engine.passport().await;
    let page = |token: String| pb::ListVerificationsRequest {
        page_size: 1,
        page_token: token,
    };
    let first = client
        .list_verifications(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    let second = client
        .list_verifications(page(first.next_page_token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(second.next_page_token.is_empty(), "two records, two pages");
    let listed: Vec<_> = first
        .verifications
        .iter()
        .chain(&second.verifications)
        .collect();
    assert_eq!(
        listed
            .iter()
            .map(|v| v.verdict.as_str())
            .collect::<Vec<_>>(),
        ["INVALID", "VALID"]
    );
    assert_eq!(listed[0].request_id, report.request_id);
    for v in &listed {
        assert!(v.issued_here && !v.summary.is_empty(), "{v:?}");
        assert!(v.signer_subject.contains("UT"), "{v:?}");
        assert_eq!(v.sod_sha256.len(), 64, "{v:?}");
        let signature = v.checks.iter().find(|c| c.name == "sod_signature");
        assert_eq!(
            signature.map(|c| c.status.as_str()),
            Some("passed"),
            "{v:?}"
        );
        let shown = format!("{v:?}");
        assert!(
            !shown.contains("ERIKSSON")
                && !shown.contains(&passport.document_number)
                && !shown.contains("<<"),
            "no holder data: {shown}"
        );
    }
    assert!(listed[1].checks.iter().all(|c| c.status != "failed"));
    assert!(listed[0].chain_from_cache && !listed[1].chain_from_cache);
    let bad = client
        .list_verifications(page("not a token".into()))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // Who asked comes from the connection (here plaintext: its address; with mutual TLS the
    // certificate's identity), never a constant.
    let requesters: Vec<Option<String>> =
        sqlx::query_scalar("select requested_by from validation_requests")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for r in &requesters {
        assert!(
            r.as_deref()
                .is_some_and(|r| r.starts_with("unauthenticated 127.0.0.1:")),
            "{requesters:?}"
        );
    }
    // Concurrent verifications share the recorders' statements; each answer names its own
    // committed row, with its own verdict.
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..48 {
        let mut client = p.engine.passport().await;
        let mut r = verify_request(&passport);
        if i % 3 == 0 {
            r.data_groups[0][10] ^= 0x01;
        }
        burst.spawn(async move { client.verify_passport(r).await.unwrap().into_inner() });
    }
    let mut answers = Vec::new();
    while let Some(a) = burst.join_next().await {
        answers.push(a.unwrap());
    }
    for a in &answers {
        let (verdict,): (String,) =
            sqlx::query_as("select verdict from validation_requests where id = $1::uuid")
                .bind(&a.request_id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(verdict, a.verdict, "request {}", a.request_id);
    }
    let ids: std::collections::BTreeSet<_> = answers.iter().map(|a| &a.request_id).collect();
    assert_eq!(ids.len(), 48);
    assert_eq!(answers.iter().filter(|a| a.verdict == "VALID").count(), 32);
    // The issuance and its event committed together.
    let (passports, events): (i64, i64) = sqlx::query_as(
        "select (select count(*) from passports), (select count(*) from outbox where event_type = 'passport_engine.passport.issued')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((passports, events), (1, 1));
    // Outside the DSC's validity the remembered path does not hold: checked again, refused.
    let mut later = verify_request(&passport);
    later.at = Some(prost_types::Timestamp {
        seconds: 4_102_444_800, // 2100-01-01
        nanos: 0,
    });
    let report = p.verify(later).await;
    assert_ne!(report.verdict, "VALID", "{}", report.report_json);
    assert!(!report.chain_from_cache, "{}", report.report_json);

    // Revoke the DSC at the CSCA: the CRL reaches the PKD by event, the engine's cache is
    // invalidated by the same event, and the engine reports the revocation.
    let signer = p
        .signer
        .signer()
        .await
        .get_active_signer(signer_pb::GetActiveSignerRequest {
            country: "UT".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    p.csca
        .csca()
        .await
        .revoke_certificate(csca_pb::RevokeCertificateRequest {
            serial_hex: signer.serial_hex.clone(),
            reason: csca_pb::RevocationReason::KeyCompromise as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    p.pkd_has("the CRL listing the DSC", |m| {
        m.crls.iter().any(|c| c.crl_number != "1")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = p.verify(verify_request(&passport)).await;
        if report.verdict == "INVALID" {
            assert!(
                report.report_json.contains("revoked"),
                "{}",
                report.report_json
            );
            // New trust material: nothing remembered from the old one.
            assert_ne!(report.trust_version, first_version);
            assert!(!report.chain_from_cache, "{}", report.report_json);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation never reached the engine: {}",
            report.report_json
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A DG1 whose name field does not parse (a digit in it): the stored report quotes the
    // field, ListVerifications withholds it, from the check and from the summary.
    let mut bad_name = verify_request(&passport);
    let dg1 = &mut bad_name.data_groups[0];
    let at = dg1
        .windows(4)
        .position(|w| w == b"ANNA")
        .expect("the holder's name in DG1");
    dg1[at + 2] = b'4';
    let report = p.verify(bad_name).await;
    assert_ne!(report.verdict, "VALID", "{}", report.report_json);
    let stored: String =
        sqlx::query_scalar("select report::text from validation_requests where id = $1::uuid")
            .bind(&report.request_id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        stored.contains("ERIKSSON"),
        "the stored report quotes the MRZ, so withholding it is needed: {stored}"
    );
    let newest = client
        .list_verifications(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    let record = &newest.verifications[0];
    assert_eq!(record.request_id, report.request_id);
    let shown = format!("{record:?}");
    assert!(
        !shown.contains("ERIKSSON") && !shown.contains("AN4A"),
        "{shown}"
    );
    let mrz = record.checks.iter().find(|c| c.name == "mrz").unwrap();
    assert_eq!(mrz.status, "failed", "{shown}");
    assert!(mrz.detail.starts_with("withheld"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn german_master_list_and_real_sod() {
    let p = platform().await;
    let mut pkd = p.pkd().pkd().await;
    // A CRL whose CSCA the PKD does not hold is refused, saying so.
    let early = pkd
        .import_crl(pkd_pb::ImportCrlRequest {
            crl: vectors("crl/CRL_NL_CSCA_7_crlnumber7_2025-05-19.crl"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    assert!(
        early.message().contains("no stored CSCA of NL"),
        "{early:?}"
    );
    // Without a root the PKD refuses: an unverified master list never becomes trust.
    let refused = pkd
        .import_master_list(pkd_pb::ImportMasterListRequest {
            master_list: vectors("masterlist/DE_ML_2026-05-28-08-28-45.ml"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    // Against another root it does not verify.
    let wrong = pkd
        .import_master_list(pkd_pb::ImportMasterListRequest {
            master_list: vectors("masterlist/DE_ML_2026-05-28-08-28-45.ml"),
            roots: vec![vectors("crl/NL_ROOT_CA.cer")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument, "{wrong:?}");
    let report = pkd
        .import_master_list(pkd_pb::ImportMasterListRequest {
            master_list: vectors("masterlist/DE_ML_2026-05-28-08-28-45.ml"),
            roots: vec![vectors("masterlist/DE_ROOT_CA_CSCA07.cer")],
            source_name: "DE_ML_2026-05-28-08-28-45.ml".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.total, 588, "{report:?}");
    assert!(report.added > 500, "{report:?}");
    assert!(report.countries.len() > 100, "{report:?}");
    assert_eq!(
        report.added + report.duplicates + report.rejected.len() as u32,
        588,
        "{report:?}"
    );
    // A second import is a no-op reporting duplicates.
    let again = pkd
        .import_master_list(pkd_pb::ImportMasterListRequest {
            master_list: vectors("masterlist/DE_ML_2026-05-28-08-28-45.ml"),
            roots: vec![vectors("masterlist/DE_ROOT_CA_CSCA07.cer")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.added, again.duplicates), (0, 588));
    let jobs = pkd
        .list_sync_jobs(pkd_pb::ListSyncJobsRequest { limit: 10 })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    let statuses: Vec<_> = jobs.iter().map(|j| j.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["succeeded", "succeeded", "failed", "failed"],
        "{jobs:?}"
    );

    // The real German SOD with its real DG14 verifies through the engine.
    let report = p
        .verify(pb::VerifyPassportRequest {
            ef_sod: vectors("sod/EF_SOD_DE.bin"),
            data_groups: vec![vectors("dg/EF_DG14_DE.bin")],
            at: None,
        })
        .await;
    assert_eq!(report.verdict, "VALID", "{}", report.report_json);

    // The Dutch CRL: its CSCA (NL serialNumber 7) came with the German master list, so it
    // verifies and is stored once; stale as it is, it is stored as received (Passive
    // Authentication judges staleness).
    let crl = || pkd_pb::ImportCrlRequest {
        crl: vectors("crl/CRL_NL_CSCA_7_crlnumber7_2025-05-19.crl"),
        ..Default::default()
    };
    let first = pkd.import_crl(crl()).await.unwrap().into_inner();
    assert_eq!(
        (first.added, first.duplicates, first.countries.as_slice()),
        (1, 0, ["NL".to_owned()].as_slice())
    );
    let second = pkd.import_crl(crl()).await.unwrap().into_inner();
    assert_eq!((second.added, second.duplicates), (0, 1));

    // HTTP downloads: the CRL of UT with an ETag honoured by If-None-Match.
    p.pkd_has("the CRL", |m| !m.crls.is_empty()).await;
    let url = p.pkd().http_url("/v1/pkd/crl/UT");
    let out = std::process::Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", &url])
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        headers.contains("content-type: application/pkix-crl"),
        "{headers}"
    );
    let etag = headers
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .to_owned();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("If-None-Match: {etag}"),
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "304");
    let (code, _) = curl(&p.pkd().http_url("/v1/pkd/crl/U%27T"));
    assert_eq!(code, 400);
    let (code, body) = curl(&p.pkd().http_url("/v1/pkd/dsclist"));
    assert_eq!(code, 200);
    assert!(body.contains("BEGIN CERTIFICATE"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_holder_data_names_the_field_and_pkd_outage_is_not_valid() {
    let mut p = platform().await;
    p.pkd_has("the CSCA", |m| !m.cscas.is_empty()).await;
    let mut client = p.engine.passport().await;
    for (field, edit) in [
        (
            "date_of_birth",
            Box::new(|r: &mut pb::IssuePassportRequest| {
                r.holder.as_mut().unwrap().date_of_birth = "1974-13-40".into()
            }) as Box<dyn Fn(&mut pb::IssuePassportRequest)>,
        ),
        (
            "sex",
            Box::new(|r: &mut pb::IssuePassportRequest| {
                r.holder.as_mut().unwrap().sex = "Q".into()
            }),
        ),
        (
            "date_of_expiry",
            Box::new(|r: &mut pb::IssuePassportRequest| r.date_of_expiry = "2001-01-01".into()),
        ),
        (
            "face_image",
            Box::new(|r: &mut pb::IssuePassportRequest| r.face_image = b"not an image".to_vec()),
        ),
        (
            "document_number",
            Box::new(|r: &mut pb::IssuePassportRequest| r.document_number = "AB-12".into()),
        ),
        (
            "nationality",
            Box::new(|r: &mut pb::IssuePassportRequest| {
                r.holder.as_mut().unwrap().nationality = "U1O".into()
            }),
        ),
    ] {
        let mut r = holder();
        edit(&mut r);
        let s = client.issue_passport(r).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{field}: {s:?}");
        assert!(s.message().starts_with(field), "{field}: {}", s.message());
    }
    // No signer for this document type: the Document Signer's refusal, not INTERNAL.
    let mut r = holder();
    r.document_type = "PZ".into();
    let s = client.issue_passport(r).await.unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("no active signer"), "{s:?}");
    let passport = p.issue().await;
    // Two DG1s, one forged: refused, never "the first one checked".
    let mut twice = verify_request(&passport);
    twice.data_groups.insert(0, twice.data_groups[0].clone());
    let s = client.verify_passport(twice).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("two files for DG1"), "{s:?}");
    let listed = client
        .list_passports(pb::ListPassportsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.passports.len(), 1);
    assert_eq!(listed.passports[0].id, passport.id);

    // The first verification caches UT's trust material; with the PKD stopped the engine
    // answers from the cache and says so.
    let first = p.verify(verify_request(&passport)).await;
    assert_eq!(first.verdict, "VALID");
    p.pkd.take().unwrap().stop().await.unwrap();
    let cached = p.verify(verify_request(&passport)).await;
    assert_eq!(cached.verdict, "VALID");
    assert!(cached.trust_from_cache);
    // An engine with no cache and no PKD: INDETERMINATE, never VALID.
    let mut conn = p.db.admin_on("marty_passport_engine").await;
    sqlx::query("delete from trust_cache")
        .execute(&mut conn)
        .await
        .unwrap();
    let none = p.verify(verify_request(&passport)).await;
    assert_eq!(none.verdict, "INDETERMINATE", "{}", none.report_json);
    let _ = &p.nats;
}

/// A self-made CA hierarchy for forgeries: (CSCA, its key, a function issuing DSCs).
struct Rogue {
    csca: marty_icao::cert::Certificate,
    key: marty_icao::issue::KeyPair,
    subject: marty_icao::issue::Subject,
}

fn period() -> marty_icao::issue::Period {
    let now = time::OffsetDateTime::now_utc();
    marty_icao::issue::Period {
        not_before: now,
        not_after: now + time::Duration::days(30),
        key_usage_not_before: now,
        key_usage_not_after: now + time::Duration::days(10),
    }
}

fn request(
    subject: &marty_icao::issue::Subject,
    cn: &str,
) -> marty_icao::issue::CertificateRequest {
    marty_icao::issue::CertificateRequest {
        subject: marty_icao::issue::Subject {
            common_name: cn.into(),
            ..subject.clone()
        },
        period: period(),
        crl_distribution_point: "http://127.0.0.1/crl".into(),
        serial: None,
    }
}

fn key() -> marty_icao::issue::KeyPair {
    marty_icao::issue::KeyPair::generate("ec:P-256:named".parse().unwrap()).unwrap()
}

impl Rogue {
    fn new(country: &str, mrz: &str) -> Rogue {
        let subject = marty_icao::issue::Subject {
            country: country.into(),
            mrz_country: mrz.into(),
            organization: None,
            common_name: format!("CSCA {country}"),
        };
        let key = key();
        let csca =
            marty_icao::issue::make_csca(&request(&subject, &subject.common_name), &key).unwrap();
        Rogue { csca, key, subject }
    }

    fn dsc(&self) -> marty_icao::cert::Certificate {
        marty_icao::issue::make_dsc(
            &self.csca,
            &self.key,
            &self.subject,
            &request(&self.subject, "Forged DS"),
            &key().spki,
            &["P"],
        )
        .unwrap()
    }
}

/// Events are not trust on their word: a DSC published on `marty.csca.certificate.issued` by
/// anyone who reaches NATS, signed by a key the PKD does not hold as a CSCA, is parked with
/// the reason and never stored; garbage is parked too; genuine events keep flowing meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn forged_events_are_parked_not_trusted() {
    let p = platform().await;
    p.pkd_has("the CSCA", |m| !m.cscas.is_empty()).await;
    let now = time::OffsetDateTime::now_utc();
    // A "DSC" of UT from a CSCA key nobody certified, and a self-signed "CSCA" of Belgium.
    let dsc = Rogue::new("UT", "UTO").dsc();
    let belgium = Rogue::new("BE", "BEL").csca;
    let js = async_nats::jetstream::new(async_nats::connect(&p.nats.url).await.unwrap());
    let forge = |der: &[u8]| marty_events::Envelope {
        id: uuid::Uuid::new_v4(),
        source: marty_config::Service::Csca,
        event_type: "csca.certificate.issued".into(),
        key: format!("certificate:{}", uuid::Uuid::new_v4()),
        occurred_at: now,
        schema_version: 1,
        payload: serde_json::json!({ "type": "document_signer", "country": "UT", "der": openssl::base64::encode_block(der) }),
        headers: Default::default(),
    };
    let mut csca_claim = forge(&belgium.raw);
    csca_claim.payload["type"] = "csca".into();
    let forged = [forge(&dsc.raw), forge(b"\x30\x03\x02\x01"), csca_claim];
    for e in &forged {
        js.publish(e.subject(), serde_json::to_vec(e).unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A genuine event after them is handled: another country's CSCA appears.
    p.csca
        .csca()
        .await
        .create_csca(csca_pb::CreateCscaRequest {
            country: "FR".into(),
            key_spec: "ec:P-256:named".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut conn = p.db.admin_on("marty_pkd").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (parked, uv): (i64, i64) = sqlx::query_as(
            "select (select count(*) from inbox_parked where event_id = any($1)),
                    (select count(*) from certificates where country_code = 'FR')",
        )
        .bind(forged.iter().map(|e| e.id).collect::<Vec<_>>())
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if parked == 3 && uv == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "parked {parked} of 3 forged events, FR CSCAs {uv}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let reason: String =
        sqlx::query_scalar("select last_error from inbox_parked where event_id = $1")
            .bind(forged[0].id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(reason.contains("no stored CSCA of UT signed"), "{reason}");
    let stored: i64 =
        sqlx::query_scalar("select count(*) from certificates where fingerprint_sha256 = $1")
            .bind(dsc.fingerprint_sha256())
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(stored, 0, "the forged DSC became trust material");
    let reason: String =
        sqlx::query_scalar("select last_error from inbox_parked where event_id = $1")
            .bind(forged[2].id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        reason.contains("the CSCA service does not hold"),
        "{reason}"
    );
    let belgian: i64 =
        sqlx::query_scalar("select count(*) from certificates where country_code = 'BE'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(belgian, 0, "a forged CSCA became a trust anchor");

    // A master list whose signer chains to the root it is sent with may still not add CSCAs
    // for this platform's own country (UT), whose CSCAs come from its CSCA service only.
    let root = Rogue::new("XK", "RKS");
    let ml_key = key();
    let signer = marty_icao::issue::make_ml_signer(
        &root.csca,
        &root.key,
        &root.subject,
        &request(&root.subject, "ML signer"),
        &ml_key.spki,
    )
    .unwrap();
    let fake_ut = Rogue::new("UT", "UTO").csca;
    // …and a CSCA for UV, a country this platform does not serve yet.
    let fake_uv = Rogue::new("UV", "UVX");
    let ml = marty_icao::masterlist::build(
        &[fake_ut, fake_uv.csca.clone(), root.csca.clone()],
        &signer,
        &root.csca,
        &ml_key.private,
        marty_icao::algo::DigestAlgorithm::Sha256,
        ml_key.signature_algorithm(),
        now,
    )
    .unwrap();
    let report = p
        .pkd()
        .pkd()
        .await
        .import_master_list(pkd_pb::ImportMasterListRequest {
            master_list: ml,
            roots: vec![root.csca.raw.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.added, 2, "{report:?}");
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(
        report.rejected[0].reason.contains("own country"),
        "{report:?}"
    );

    // While UV is foreign its CRLs are imported like any country's — but not from the future
    // (it would stay "the newest CRL" until then).
    let uv_alg = marty_icao::algo::default_signature_algorithm(
        &fake_uv.key.private,
        marty_icao::algo::DigestAlgorithm::Sha256,
        false,
    );
    let uv_crl = |this: time::OffsetDateTime| {
        marty_icao::crl::build(
            &fake_uv.csca,
            &fake_uv.key.private,
            &uv_alg,
            this,
            this + time::Duration::days(30),
            7,
            &[],
        )
        .unwrap()
    };
    let mut pkd = p.pkd().pkd().await;
    let future = pkd
        .import_crl(pkd_pb::ImportCrlRequest {
            crl: uv_crl(now + time::Duration::days(1000)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(future.message().contains("future"), "{future:?}");
    pkd.import_crl(pkd_pb::ImportCrlRequest {
        crl: uv_crl(now - time::Duration::minutes(5)),
        ..Default::default()
    })
    .await
    .unwrap();

    // The platform starts to serve UV: from then on only its own UV CSCA and CRLs are trust,
    // whatever the master list brought before, and a CRL signed by the planted key changes
    // nothing.
    let own_uv = p
        .csca
        .csca()
        .await
        .create_csca(csca_pb::CreateCscaRequest {
            country: "UV".into(),
            mrz_country: "UVX".into(),
            key_spec: "ec:P-256:named".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(30);
    let uv = loop {
        let m = pkd
            .get_trust_material(pkd_pb::GetTrustMaterialRequest {
                country: "UV".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if m.cscas
            .iter()
            .any(|c| c.source == pkd_pb::Source::LocalEvent as i32)
            && !m.crls.is_empty()
        {
            break m;
        }
        assert!(Instant::now() < deadline, "the PKD never learnt UV's CSCA");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        uv.cscas.len(),
        1,
        "the planted UV CSCA is still trusted: {:?}",
        uv.cscas
    );
    assert!(
        uv.crls
            .iter()
            .all(|c| c.source == pkd_pb::Source::LocalEvent as i32),
        "a CRL of the planted UV key is still trust material"
    );
    let own_serial = own_uv.certificate.unwrap().serial_hex;
    let rogue_crl = marty_icao::crl::build(
        &fake_uv.csca,
        &fake_uv.key.private,
        &uv_alg,
        now - time::Duration::minutes(1),
        now + time::Duration::days(1),
        99,
        &[(marty_icao::hex::decode(&own_serial).unwrap(), now)],
    )
    .unwrap();
    let refused = pkd
        .import_crl(pkd_pb::ImportCrlRequest {
            crl: rogue_crl,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let uv = pkd
        .get_trust_material(pkd_pb::GetTrustMaterialRequest {
            country: "UV".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !uv.cscas[0].revoked,
        "a foreign key revoked this platform's CSCA"
    );
    // A CRL that a stored CSCA (XK's) signed but that the schema cannot hold is refused by
    // name, not as an internal error.
    let xk_alg = root.key.signature_algorithm();
    let same_time =
        marty_icao::crl::build(&root.csca, &root.key.private, &xk_alg, now, now, 1, &[]).unwrap();
    let refused = pkd
        .import_crl(pkd_pb::ImportCrlRequest {
            crl: same_time,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("nextUpdate"), "{refused:?}");

    // A CRL announced for UT that the PKD never learns (forged here; in life, one the PKD has
    // not processed yet): the engine trusts no material that lacks it, and says why.
    let passport = p.issue().await;
    assert_eq!(p.verify(verify_request(&passport)).await.verdict, "VALID");
    let mut announced = forge(b"");
    announced.event_type = "csca.crl.issued".into();
    announced.key = "crl:UT".into();
    announced.payload = serde_json::json!({ "country": "UT", "crl_number": "999999" });
    js.publish(
        announced.subject(),
        serde_json::to_vec(&announced).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = p.verify(verify_request(&passport)).await;
        if report.verdict == "INDETERMINATE" {
            assert!(
                report.report_json.contains("has not yet learnt")
                    && report.report_json.contains("CRL number 999999"),
                "{}",
                report.report_json
            );
            break;
        }
        assert_eq!(report.verdict, "VALID", "{}", report.report_json);
        assert!(
            Instant::now() < deadline,
            "the announcement never reached the engine"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A revoked CSCA anchors nothing: the PKD learns the revocation (confirmed with the CSCA
/// service), the engine's cache is invalidated, and a passport under it is no longer VALID.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_csca_anchors_nothing() {
    let p = platform().await;
    // After a rollover the new key has two certificates: the new self-signed CSCA and the
    // link certificate from the old key. Revoking the CSCA must leave neither as an anchor.
    p.csca
        .csca()
        .await
        .rollover_csca(csca_pb::RolloverCscaRequest {
            country: "UT".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    p.signer
        .signer()
        .await
        .rotate_signer(signer_pb::RotateSignerRequest {
            country: "UT".into(),
            key_spec: "ec:P-256:named".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    p.pkd_has("the new CSCA and its link", |m| {
        m.cscas.len() == 2 && m.links.len() == 1
    })
    .await;
    let passport = p.issue().await;
    assert_eq!(p.verify(verify_request(&passport)).await.verdict, "VALID");
    let csca = p
        .csca
        .csca()
        .await
        .get_csca_data(csca_pb::GetCscaDataRequest {
            country: "UT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    p.csca
        .csca()
        .await
        .revoke_certificate(csca_pb::RevokeCertificateRequest {
            serial_hex: csca.serial_hex,
            reason: csca_pb::RevocationReason::CaCompromise as i32,
            country: "UT".into(),
        })
        .await
        .unwrap();
    p.pkd_has("the revocation", |m| m.cscas.iter().any(|c| c.revoked))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = p.verify(verify_request(&passport)).await;
        if report.verdict != "VALID" {
            assert_eq!(report.verdict, "INDETERMINATE", "{}", report.report_json);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a passport under a revoked CSCA stayed VALID"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
