//! The Document Signer as its clients meet it: a real service on port 0 against its own
//! database and a real NATS, certified by a real CSCA service (its peer over gRPC, with its
//! own database). EF.SODs checked by Marty's Passive Authentication, `openssl cms` and the
//! Python oracle.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use marty_icao::cert::Certificate;
use marty_icao::trust::{PathOutcome, TrustStore};
use marty_proto::csca::v1 as csca_pb;
use marty_proto::signer::v1 as pb;
use marty_proto::signer::v1::document_signer_client::DocumentSignerClient;
use marty_testkit::tools::{openssl_ok, oracle, repo};
use marty_testkit::{TestApp, TestDb, TestNats, spawn_app};
use sqlx::Row;
use tonic::Code;
use tonic::transport::Channel;

struct World {
    db: TestDb,
    nats: TestNats,
    csca: TestApp,
    signer: TestApp,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    let db = TestDb::start().await;
    db.provision_services(&[&marty_csca::DESCRIPTOR, &marty_document_signer::DESCRIPTOR])
        .await;
    let nats = TestNats::start();
    let csca = spawn_app(&marty_csca::DESCRIPTOR, db.service_env(&nats, &[]))
        .await
        .unwrap();
    let signer = spawn_signer(&db, &nats, &csca, &[]).await;
    let w = World {
        db,
        nats,
        csca,
        signer,
        dir: tempfile::tempdir().unwrap(),
    };
    w.csca
        .csca()
        .await
        .create_csca(csca_pb::CreateCscaRequest {
            country: "UT".into(),
            key_spec: "ec:P-256:named".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    w
}

async fn spawn_signer(
    db: &TestDb,
    nats: &TestNats,
    csca: &TestApp,
    extra: &[(&str, &str)],
) -> TestApp {
    let url = csca.grpc_url();
    let mut env = vec![("MARTY_CSCA_URL", url.as_str())];
    env.extend_from_slice(extra);
    spawn_app(
        &marty_document_signer::DESCRIPTOR,
        db.service_env(nats, &env),
    )
    .await
    .unwrap()
}

impl World {
    async fn client(&self) -> DocumentSignerClient<Channel> {
        self.signer.signer().await
    }

    async fn csca_cert(&self) -> Certificate {
        let c = self
            .csca
            .csca()
            .await
            .get_csca_data(csca_pb::GetCscaDataRequest {
                country: "UT".into(),
            })
            .await
            .unwrap()
            .into_inner();
        Certificate::from_der(&c.der).unwrap()
    }

    async fn db(&self) -> sqlx::PgConnection {
        self.db.admin_on("marty_document_signer").await
    }
}

async fn activate(c: &mut DocumentSignerClient<Channel>, key: &str) -> pb::Signer {
    c.rotate_signer(pb::RotateSignerRequest {
        country: "UT".into(),
        key_spec: key.into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("RotateSigner {key}: {s}"))
    .into_inner()
}

/// DG1 and DG2 of a specimen passport.
fn data_groups() -> Vec<(u8, Vec<u8>)> {
    let mrz = marty_icao::mrz::parse(
        "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<L898902C36UTO7408122F3404159<<<<<<<<<<<<<<<4",
    )
    .unwrap();
    let face = std::fs::read(repo().join("samples/face.jpg")).unwrap();
    let dg2 =
        marty_icao::lds::build_dg2(&marty_icao::lds::FaceImage::from_image(face).unwrap()).unwrap();
    vec![(1, marty_icao::lds::build_dg1(&mrz)), (2, dg2)]
}

fn request(hash: &str, dgs: &[(u8, Vec<u8>)]) -> pb::SignLdsSecurityObjectRequest {
    let algorithm: marty_icao::algo::DigestAlgorithm = hash.parse().unwrap();
    pb::SignLdsSecurityObjectRequest {
        hash_algorithm: hash.into(),
        data_group_hashes: dgs
            .iter()
            .map(|(n, b)| pb::DataGroupHash {
                number: u32::from(*n),
                hash: algorithm.digest(b),
            })
            .collect(),
        document_reference: "L898902C3".into(),
        country: "UT".into(),
        ..Default::default()
    }
}

fn assert_code<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, contains: &str) {
    match r {
        Err(s) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(
                s.message().contains(contains),
                "{:?} lacks {contains:?}",
                s.message()
            );
            for leak in ["SQLSTATE", "sqlx", "relation ", "select "] {
                assert!(
                    !s.message().contains(leak),
                    "{:?} leaks {leak}",
                    s.message()
                );
            }
        }
        Ok(v) => panic!("expected {code:?} ({contains}), got {v:?}"),
    }
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A signer: its key generated in the service, its CSR certified by the CSCA, its DSC
/// chaining to the CSCA (by Marty and by `openssl verify`), announced with the DER.
#[tokio::test(flavor = "multi_thread")]
async fn signers_are_certified_by_the_csca() {
    let w = world().await;
    let mut c = w.client().await;
    let s = c
        .create_signer(pb::CreateSignerRequest {
            country: "UT".into(),
            key_spec: "ec:P-256:named".into(),
            document_type: "P".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.state, "active");
    let dsc = Certificate::from_der(&s.certificate_der).unwrap();
    let csca = w.csca_cert().await;
    assert!(dsc.document_signer_problem().is_none());
    assert_eq!(dsc.document_types, Some(vec!["P".to_owned()]));
    let path =
        TrustStore::new(vec![csca.clone()], vec![]).validate(&dsc, time::OffsetDateTime::now_utc());
    assert_eq!(path.outcome, PathOutcome::Valid, "{}", path.reason);
    let (nb, na) = dsc.private_key_usage_period.unwrap();
    assert_eq!(na.unwrap() - nb.unwrap(), time::Duration::days(90));
    let d = w.dir.path();
    std::fs::write(d.join("csca.der"), &csca.raw).unwrap();
    std::fs::write(d.join("dsc.der"), &dsc.raw).unwrap();
    openssl_ok(
        d,
        &[
            "x509", "-inform", "DER", "-in", "csca.der", "-out", "csca.pem",
        ],
    );
    openssl_ok(
        d,
        &[
            "x509", "-inform", "DER", "-in", "dsc.der", "-out", "dsc.pem",
        ],
    );
    assert!(
        openssl_ok(
            d,
            &["verify", "-x509_strict", "-CAfile", "csca.pem", "dsc.pem"]
        )
        .contains("dsc.pem: OK")
    );
    // Once only; EnsureActiveSigner and GetActiveSigner give the same one.
    assert_code(
        c.create_signer(pb::CreateSignerRequest {
            country: "UT".into(),
            ..Default::default()
        })
        .await,
        Code::AlreadyExists,
        "RotateSigner",
    );
    let ensured = c
        .ensure_active_signer(pb::EnsureActiveSignerRequest {
            country: "UT".into(),
            document_type: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ensured.serial_hex, s.serial_hex);
    // The CSCA knows it as a DSC; the event carries the DER.
    let js = w.nats.jetstream().await;
    let mut found = None;
    wait_for("document_signer.signer.activated", async || {
        let Ok(stream) = js.get_stream("MARTY").await else {
            return false;
        };
        let Ok(m) = stream
            .get_last_raw_message_by_subject("marty.document_signer.signer.activated")
            .await
        else {
            return false;
        };
        found = Some(serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap());
        true
    })
    .await;
    let event = found.unwrap();
    let der = openssl::base64::decode_block(event["payload"]["der"].as_str().unwrap()).unwrap();
    assert_eq!(der, s.certificate_der);
    assert_eq!(event["payload"]["serial_hex"], s.serial_hex);
    // A rotation replaces it; the old one retires.
    let rotated = activate(&mut c, "").await;
    assert_ne!(rotated.serial_hex, s.serial_hex);
    let mut conn = w.db().await;
    let states: Vec<(String, Option<String>)> =
        sqlx::query_as("select status, retirement_reason from signer_keys order by created_at")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        states,
        vec![
            ("retired".into(), Some("rotated".into())),
            ("active".into(), None)
        ]
    );
    w.signer.stop().await.unwrap();
}

/// EF.SODs from every kind of signer key: Marty's PA and the Python oracle accept them all,
/// `openssl cms -verify` those with RSA and named curves.
#[tokio::test(flavor = "multi_thread")]
async fn sods_verify_with_openssl_pa_and_the_oracle() {
    let w = world().await;
    let mut c = w.client().await;
    let csca = w.csca_cert().await;
    let trust = TrustStore::new(vec![csca.clone()], vec![]);
    let dgs = data_groups();
    let d = w.dir.path();
    std::fs::write(d.join("csca.der"), &csca.raw).unwrap();
    openssl_ok(
        d,
        &[
            "x509", "-inform", "DER", "-in", "csca.der", "-out", "csca.pem",
        ],
    );
    std::fs::write(d.join("dg1.bin"), &dgs[0].1).unwrap();
    std::fs::write(d.join("dg2.bin"), &dgs[1].1).unwrap();
    for (key, hash, openssl_verifies) in [
        ("ec:P-256:named", "sha256", true),
        ("rsa:2048", "sha256", true),
        ("rsa-pss:2048", "sha384", true),
        ("ec:P-384:named", "sha384", true),
        ("ec:brainpoolP256r1", "sha256", false),
        ("ec:P-521", "sha512", false),
    ] {
        let signer = activate(&mut c, key).await;
        let mut req = request(hash, &dgs);
        req.lds_version = "0108".into();
        req.signing_time = true;
        let r = c.sign_lds_security_object(req).await.unwrap().into_inner();
        assert_eq!(r.signer_serial_hex, signer.serial_hex);
        assert!(r.audit_id > 0);
        let report = marty_icao::pa::passive_authentication(
            &r.ef_sod,
            &dgs,
            &trust,
            time::OffsetDateTime::now_utc(),
            false,
        );
        assert_eq!(
            report.verdict,
            marty_icao::pa::Verdict::Valid,
            "{key}: {}",
            report.reason
        );
        let sod = marty_icao::sod::Sod::parse(&r.ef_sod).unwrap();
        assert_eq!(sod.lds.version, 1);
        std::fs::write(d.join("sod.bin"), &r.ef_sod).unwrap();
        let (code, _, shown) = oracle(
            d,
            &[
                "sod",
                "sod.bin",
                "--dg",
                "1=dg1.bin",
                "--dg",
                "2=dg2.bin",
                "--csca",
                "csca.der",
            ],
        );
        assert_eq!(code, Some(0), "{key}: {shown}");
        if openssl_verifies {
            // EF.SOD is the CMS inside tag 77.
            let cms = marty_icao::der::parse(&r.ef_sod).unwrap().value.to_vec();
            std::fs::write(d.join("sod.cms"), &cms).unwrap();
            let out = openssl_ok(
                d,
                &[
                    "cms", "-verify", "-inform", "DER", "-in", "sod.cms", "-CAfile", "csca.pem",
                    "-purpose", "any", "-out", "lds.der",
                ],
            );
            assert!(out.contains("Verification successful"), "{key}: {out}");
            assert_eq!(
                std::fs::read(d.join("lds.der")).unwrap(),
                sod.lds.to_der(),
                "{key}: OpenSSL reads the same LDS security object"
            );
        }
    }
    w.signer.stop().await.unwrap();
}

/// SignDocument: a detached CMS signature that `openssl cms -verify -content` accepts.
#[tokio::test(flavor = "multi_thread")]
async fn documents_get_detached_signatures() {
    let w = world().await;
    let mut c = w.client().await;
    activate(&mut c, "ec:P-256:named").await;
    let data = b"a document worth signing\n".repeat(100);
    let r = c
        .sign_document(pb::SignDocumentRequest {
            data: data.clone(),
            document_reference: "letter-1".into(),
            country: "UT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let d = w.dir.path();
    let csca = w.csca_cert().await;
    std::fs::write(d.join("csca.der"), &csca.raw).unwrap();
    openssl_ok(
        d,
        &[
            "x509", "-inform", "DER", "-in", "csca.der", "-out", "csca.pem",
        ],
    );
    std::fs::write(d.join("sig.der"), &r.cms_signature).unwrap();
    std::fs::write(d.join("data.bin"), &data).unwrap();
    let out = openssl_ok(
        d,
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "sig.der",
            "-content",
            "data.bin",
            "-CAfile",
            "csca.pem",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
    );
    assert!(out.contains("Verification successful"), "{out}");
    // Other bytes do not verify against it.
    std::fs::write(d.join("other.bin"), b"another document").unwrap();
    let bad = marty_testkit::tools::openssl(
        d,
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "sig.der",
            "-content",
            "other.bin",
            "-CAfile",
            "csca.pem",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
    );
    assert!(!bad.status.success());
    let audit = c
        .list_signatures(pb::ListSignaturesRequest {
            document_reference: "letter-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audit.signatures.len(), 1);
    assert_eq!(audit.signatures[0].kind, "document");
    assert_eq!(
        audit.signatures[0].content_sha256,
        marty_icao::hex::encode(&marty_icao::algo::DigestAlgorithm::Sha256.digest(&data))
    );
    w.signer.stop().await.unwrap();
}

/// Bad input gets INVALID_ARGUMENT saying why; a missing signer FAILED_PRECONDITION; an
/// unreachable CSCA UNAVAILABLE — and nothing is left half-written.
#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_and_leave_nothing_behind() {
    let w = world().await;
    let mut c = w.client().await;
    let dgs = data_groups();
    assert_code(
        c.sign_lds_security_object(request("sha256", &dgs)).await,
        Code::FailedPrecondition,
        "no active signer for UT/P",
    );
    activate(&mut c, "ec:P-256:named").await;
    let mut short = request("sha256", &dgs);
    short.data_group_hashes[1].hash.truncate(20);
    assert_code(
        c.sign_lds_security_object(short).await,
        Code::InvalidArgument,
        "the DG2 hash has 20 bytes",
    );
    let mut sha384_lengths = request("sha256", &dgs);
    sha384_lengths.hash_algorithm = "sha384".into();
    assert_code(
        c.sign_lds_security_object(sha384_lengths).await,
        Code::InvalidArgument,
        "SHA-384 hashes have 48",
    );
    assert_code(
        c.sign_lds_security_object(request("sha1", &dgs)).await,
        Code::InvalidArgument,
        "never issues SHA-1",
    );
    let mut md5 = request("sha256", &dgs);
    md5.hash_algorithm = "md5".into();
    assert_code(
        c.sign_lds_security_object(md5).await,
        Code::InvalidArgument,
        "unknown hash",
    );
    let mut one = request("sha256", &dgs);
    one.data_group_hashes.truncate(1);
    assert_code(
        c.sign_lds_security_object(one).await,
        Code::InvalidArgument,
        "2 to 16",
    );
    let mut dg17 = request("sha256", &dgs);
    dg17.data_group_hashes[1].number = 17;
    assert_code(
        c.sign_lds_security_object(dg17).await,
        Code::InvalidArgument,
        "data group 17",
    );
    let mut lds = request("sha256", &dgs);
    lds.lds_version = "1.8".into();
    assert_code(
        c.sign_lds_security_object(lds).await,
        Code::InvalidArgument,
        "four digits",
    );
    let mut reference = request("sha256", &dgs);
    reference.document_reference = "x".repeat(65);
    assert_code(
        c.sign_lds_security_object(reference).await,
        Code::InvalidArgument,
        "64 printable",
    );
    let mut country = request("sha256", &dgs);
    country.country = "Utopia".into();
    assert_code(
        c.sign_lds_security_object(country).await,
        Code::InvalidArgument,
        "two upper-case letters",
    );
    assert_code(
        c.sign_document(pb::SignDocumentRequest {
            country: "UT".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "nothing to sign",
    );
    assert_code(
        c.rotate_signer(pb::RotateSignerRequest {
            country: "UT".into(),
            key_spec: "dsa:1024".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "unknown key spec",
    );
    // A country the CSCA has no CSCA for: the CSCA's refusal, passed on.
    assert_code(
        c.create_signer(pb::CreateSignerRequest {
            country: "DE".into(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "the CSCA refused the certificate request",
    );
    let mut conn = w.db().await;
    let audited: i64 = sqlx::query_scalar("select count(*) from signature_audit")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(audited, 0, "refused requests sign nothing");
    // The CSCA down: UNAVAILABLE, and the key generated for the CSR is not kept.
    let keys_before: i64 = sqlx::query_scalar("select count(*) from signer_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let World {
        csca,
        signer,
        db,
        nats,
        dir,
    } = w;
    csca.stop().await.unwrap();
    let mut c = signer.signer().await;
    assert_code(
        c.rotate_signer(pb::RotateSignerRequest {
            country: "UT".into(),
            ..Default::default()
        })
        .await,
        Code::Unavailable,
        "the CSCA at http://127.0.0.1:",
    );
    let keys_after: i64 = sqlx::query_scalar("select count(*) from signer_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys_after, keys_before);
    // Signing goes on with the active signer.
    c.sign_lds_security_object(request("sha256", &dgs))
        .await
        .unwrap();
    signer.stop().await.unwrap();
    drop((db, nats, dir));
}

/// 50 signatures at once all succeed and are all audited; the audit pages.
#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_signatures_are_all_audited() {
    let w = world().await;
    let mut c = w.client().await;
    activate(&mut c, "ec:P-256:named").await;
    let dgs = Arc::new(data_groups());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut c = c.clone();
        let dgs = dgs.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = request("sha256", &dgs);
            r.document_reference = format!("DOC{i:03}");
            c.sign_lds_security_object(r)
                .await
                .map(|r| r.into_inner().audit_id)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    let mut conn = w.db().await;
    let rows: Vec<(i64, String)> =
        sqlx::query_as("select id, document_number from signature_audit order by id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), ids);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_signatures(pb::ListSignaturesRequest {
                page_size: 20,
                page_token: token,
                document_reference: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.signatures.iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    seen.reverse();
    assert_eq!(seen, ids, "newest first, every record once");
    // The audit is append-only, even for a role that may write.
    let denied = sqlx::query("delete from signature_audit")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("append-only"), "{denied}");
    w.signer.stop().await.unwrap();
}

/// A revocation by the CSCA stops the signer at once: no SOD is signed with the revoked DSC
/// after the event is processed, even with signatures in flight; a new signer takes over.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_dsc_never_signs_again() {
    let w = world().await;
    let mut c = w.client().await;
    let revoked = activate(&mut c, "ec:P-256:named").await;
    let dgs = Arc::new(data_groups());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let mut c = c.clone();
        let dgs = dgs.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut serials = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.sign_lds_security_object(request("sha256", &dgs)).await {
                    Ok(r) => serials.push(r.into_inner().signer_serial_hex),
                    // Between the revocation and the replacement there is no signer.
                    Err(s) => assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}"),
                }
            }
            serials
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.csca
        .csca()
        .await
        .revoke_certificate(csca_pb::RevokeCertificateRequest {
            serial_hex: revoked.serial_hex.clone(),
            reason: csca_pb::RevocationReason::KeyCompromise as i32,
            country: "UT".into(),
        })
        .await
        .unwrap();
    let mut conn = w.db().await;
    wait_for("a replacement signer", async || {
        let s = c
            .get_active_signer(pb::GetActiveSignerRequest {
                country: "UT".into(),
                document_type: String::new(),
            })
            .await;
        matches!(s, Ok(s) if s.get_ref().serial_hex != revoked.serial_hex)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut serials = Vec::new();
    for t in load {
        serials.extend(t.await.unwrap());
    }
    assert!(
        serials.contains(&revoked.serial_hex),
        "signed before the revocation"
    );
    assert!(
        serials.iter().any(|s| *s != revoked.serial_hex),
        "and by the replacement after it"
    );
    // Every signature by the revoked key precedes the moment it was retired.
    let row = sqlx::query(
        "select k.retired_at, k.retirement_reason,
                (select count(*) from signature_audit a where a.signer_key_id = k.id and a.signed_at >= k.retired_at) as late,
                (select count(*) from signature_audit a where a.signer_key_id = k.id) as total
           from signer_keys k join signer_certificates c on c.signer_key_id = k.id
          where encode(c.serial_number, 'hex') = $1",
    )
    .bind(&revoked.serial_hex)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        row.get::<Option<String>, _>("retirement_reason").as_deref(),
        Some("revoked")
    );
    assert_eq!(row.get::<i64, _>("late"), 0);
    assert!(row.get::<i64, _>("total") > 0);
    // Every audit row matches a signature a client received, and the reverse.
    let audited: i64 = sqlx::query_scalar("select count(*) from signature_audit")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(audited as usize, serials.len());
    let replacement = c
        .get_active_signer(pb::GetActiveSignerRequest {
            country: "UT".into(),
            document_type: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        replacement.key_spec, "ec:P-256:named",
        "the replacement keeps the kind of key"
    );
    w.signer.stop().await.unwrap();
}

/// A revocation published by someone else than the CSCA (anyone who reaches NATS can) is not
/// believed: the CSCA service does not confirm it, the event is parked, the signer signs on.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_revocation_is_parked_and_changes_nothing() {
    let w = world().await;
    let mut c = w.client().await;
    let signer = activate(&mut c, "ec:P-256:named").await;
    let envelope = marty_events::Envelope {
        id: uuid::Uuid::new_v4(),
        source: marty_config::Service::Csca,
        event_type: "csca.certificate.revoked".into(),
        key: format!("certificate:{}", signer.fingerprint_sha256),
        occurred_at: time::OffsetDateTime::now_utc(),
        schema_version: 1,
        payload: serde_json::json!({
            "type": "document_signer",
            "country": "UT",
            "fingerprint_sha256": signer.fingerprint_sha256,
            "reason_code": 1,
        }),
        headers: Default::default(),
    };
    let js = async_nats::jetstream::new(async_nats::connect(&w.nats.url).await.unwrap());
    js.publish(
        envelope.subject(),
        serde_json::to_vec(&envelope).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mut conn = w.db().await;
    wait_for("the forged revocation to be parked", async || {
        let parked: i64 =
            sqlx::query_scalar("select count(*) from inbox_parked where event_id = $1")
                .bind(envelope.id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        parked == 1
    })
    .await;
    let active = c
        .get_active_signer(pb::GetActiveSignerRequest {
            country: "UT".into(),
            document_type: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        active.serial_hex, signer.serial_hex,
        "the genuine signer was retired"
    );
    c.sign_lds_security_object(request("sha256", &data_groups()))
        .await
        .unwrap();
    w.signer.stop().await.unwrap();
}

/// Revoking the CSCA stops every DSC its key issued: a DSC under a revoked CSCA signs nothing
/// more (the rotation then fails until a new CSCA exists, and says so).
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_csca_stops_its_signers() {
    let w = world().await;
    let mut c = w.client().await;
    let signer = activate(&mut c, "ec:P-256:named").await;
    let csca = w.csca_cert().await;
    w.csca
        .csca()
        .await
        .revoke_certificate(csca_pb::RevokeCertificateRequest {
            serial_hex: csca.serial_hex(),
            reason: csca_pb::RevocationReason::CaCompromise as i32,
            country: "UT".into(),
        })
        .await
        .unwrap();
    let dgs = data_groups();
    wait_for("the signer under the revoked CSCA to stop", async || {
        c.sign_lds_security_object(request("sha256", &dgs))
            .await
            .is_err()
    })
    .await;
    let err = c
        .sign_lds_security_object(request("sha256", &dgs))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let mut conn = w.db().await;
    let reason: Option<String> = sqlx::query_scalar(
        "select k.retirement_reason from signer_keys k join signer_certificates c on c.signer_key_id = k.id
          where encode(c.serial_number, 'hex') = $1",
    )
    .bind(&signer.serial_hex)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(reason.as_deref(), Some("revoked"));
    w.signer.stop().await.unwrap();
}

/// No signature outside the private key usage period; a signer nearing its end is replaced
/// before it gets there.
#[tokio::test(flavor = "multi_thread")]
async fn the_usage_period_is_enforced_and_rotation_comes_first() {
    let mut w = world().await;
    let mut c = w.client().await;
    let first = activate(&mut c, "ec:P-256:named").await;
    // The usage period ends in 2 days (within the 7-day margin): the next start replaces it.
    w.db.exec(
        "marty_document_signer",
        "update signer_certificates set private_key_usage_not_after = now() + interval '2 days'",
    )
    .await;
    let restarted = spawn_signer(&w.db, &w.nats, &w.csca, &[]).await;
    std::mem::replace(&mut w.signer, restarted)
        .stop()
        .await
        .unwrap();
    let mut c = w.client().await;
    let mut second = None;
    wait_for("the rotation at start", async || {
        let s = c
            .get_active_signer(pb::GetActiveSignerRequest {
                country: "UT".into(),
                document_type: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let rotated = s.serial_hex != first.serial_hex;
        second = Some(s);
        rotated
    })
    .await;
    let second = second.unwrap();
    // Now the period is over (the clock overtook it): signing refuses, and wakes the rotation.
    w.db
        .exec(
            "marty_document_signer",
            &format!(
                "update signer_certificates set private_key_usage_not_before = now() - interval '100 days', private_key_usage_not_after = now() - interval '1 minute' where encode(serial_number, 'hex') = '{}'",
                second.serial_hex
            ),
        )
        .await;
    let dgs = data_groups();
    assert_code(
        c.sign_lds_security_object(request("sha256", &dgs)).await,
        Code::FailedPrecondition,
        "outside its private key usage period",
    );
    let mut third = String::new();
    wait_for("a replacement after the refusal", async || {
        match c.sign_lds_security_object(request("sha256", &dgs)).await {
            Ok(r) => {
                third = r.into_inner().signer_serial_hex;
                true
            }
            Err(_) => false,
        }
    })
    .await;
    assert_ne!(third, second.serial_hex);
    let mut conn = w.db().await;
    let reasons: Vec<Option<String>> = sqlx::query_scalar(
        "select retirement_reason from signer_keys where status = 'retired' order by retired_at",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        reasons,
        vec![Some("rotated".into()), Some("usage_period_ended".into())]
    );
    w.signer.stop().await.unwrap();
}

/// SIGTERM during a burst of signatures: every call either completed — and is audited — or
/// failed to its client; none is half-done.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_burst_loses_nothing() {
    let w = world().await;
    let mut c = w.client().await;
    activate(&mut c, "ec:P-256:named").await;
    let dgs = Arc::new(data_groups());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        let dgs = dgs.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            let mut failed = 0;
            for j in 0..40 {
                let mut c = c.clone();
                let mut r = request("sha256", &dgs);
                r.document_reference = format!("T{i}-{j}");
                match c.sign_lds_security_object(r).await {
                    Ok(r) => ok.push(r.into_inner().audit_id),
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let World {
        signer,
        db,
        csca,
        nats,
        dir,
    } = w;
    signer.begin_stop();
    let mut ok = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok.extend(o);
        failed += f;
    }
    signer.stopped().await.unwrap();
    assert!(
        !ok.is_empty() && failed > 0,
        "the stop came mid-burst ({} ok, {failed} failed)",
        ok.len()
    );
    let mut conn = db.admin_on("marty_document_signer").await;
    let mut audited: Vec<i64> = sqlx::query_scalar("select id from signature_audit")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    audited.sort();
    ok.sort();
    assert_eq!(
        audited, ok,
        "exactly the signatures clients received are audited"
    );
    drop((csca, nats, dir));
}

/// The readonly role sees no private key material that loads without the KEK.
#[tokio::test(flavor = "multi_thread")]
async fn signer_keys_are_never_stored_in_clear() {
    let w = world().await;
    let mut c = w.client().await;
    for key in ["ec:P-256:named", "rsa:2048", "ec:brainpoolP384r1"] {
        activate(&mut c, key).await;
    }
    let config = w.db.config();
    let db = config.database(marty_config::Service::DocumentSigner);
    let mut ro = marty_db::ConnectTarget::role(db, marty_config::Role::Readonly)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let rows = sqlx::query("select * from signer_keys")
        .fetch_all(&mut ro)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let mut blobs = 0;
    for row in &rows {
        for i in 0..row.len() {
            if let Ok(Some(b)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                blobs += 1;
                assert!(openssl::pkey::PKey::private_key_from_der(&b).is_err());
                assert!(openssl::pkey::PKey::private_key_from_pkcs8(&b).is_err());
                assert!(openssl::ec::EcKey::private_key_from_der(&b).is_err());
                assert!(openssl::rsa::Rsa::private_key_from_der(&b).is_err());
            }
        }
    }
    assert_eq!(blobs, 15);
    w.signer.stop().await.unwrap();
}
