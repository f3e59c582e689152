//! The CSCA service as its clients meet it: a real service on port 0 against a real
//! PostgreSQL (its own database, its own app role) and a real NATS; typed gRPC calls; the
//! artefacts checked by marty-icao, the `openssl` CLI and the Python oracle.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use marty_icao::cert::Certificate;
use marty_icao::issue::{Curve, KeyPair, KeySpec};
use marty_icao::name::Name;
use marty_icao::{oid, trust};
use marty_proto::csca::v1 as pb;
use marty_proto::csca::v1::csca_service_client::CscaServiceClient;
use marty_testkit::tools::{curl, openssl_ok, oracle};
use marty_testkit::{TestApp, TestDb, TestNats, spawn_app};
use sqlx::{Connection, Row};
use tonic::Code;
use tonic::transport::Channel;

struct World {
    db: TestDb,
    nats: TestNats,
    app: TestApp,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    let db = TestDb::start().await;
    db.provision_services(&[&marty_csca::DESCRIPTOR]).await;
    let nats = TestNats::start();
    let app = spawn_app(&marty_csca::DESCRIPTOR, db.service_env(&nats, &[]))
        .await
        .unwrap();
    World {
        db,
        nats,
        app,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl World {
    async fn client(&self) -> CscaServiceClient<Channel> {
        self.app.csca().await
    }

    async fn restart(&mut self, extra: &[(&str, &str)]) {
        let old = std::mem::replace(
            &mut self.app,
            spawn_app(&marty_csca::DESCRIPTOR, {
                // A second instance may run beside the first: the database is shared.
                self.db.service_env(&self.nats, extra)
            })
            .await
            .unwrap(),
        );
        old.stop().await.unwrap();
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.dir.path().join(name), bytes).unwrap();
        name.to_owned()
    }

    async fn app_db(&self) -> sqlx::PgConnection {
        self.db.admin_on("marty_csca").await
    }
}

const NAMED: KeySpec = KeySpec::Ec {
    curve: Curve::P256,
    explicit: false,
};

async fn create(
    c: &mut CscaServiceClient<Channel>,
    country: &str,
    key: &str,
) -> pb::CreateCscaResponse {
    c.create_csca(pb::CreateCscaRequest {
        country: country.into(),
        key_spec: key.into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|s| panic!("CreateCsca {country} {key}: {s}"))
    .into_inner()
}

fn csr_for(country: &str, spec: KeySpec) -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate(spec).unwrap();
    let name = Name::build(&[
        (oid::COUNTRY, country),
        (oid::ORGANIZATION, "Ministry of Tests"),
        (oid::COMMON_NAME, "Document Signer 1"),
    ]);
    let der = marty_icao::csr::build(&name, &key).unwrap();
    (key, der)
}

async fn issue(
    c: &mut CscaServiceClient<Channel>,
    csr: Vec<u8>,
    profile: pb::Profile,
    country: &str,
) -> Result<pb::IssueCertificateResponse, tonic::Status> {
    c.issue_certificate(pb::IssueCertificateRequest {
        csr_der: csr,
        profile: profile as i32,
        country: country.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

fn cert(c: &Option<pb::Certificate>) -> Certificate {
    Certificate::from_der(&c.as_ref().unwrap().der).unwrap()
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
            // Internals never reach a caller.
            for leak in ["SQLSTATE", "sqlx", "relation ", "select ", "insert into"] {
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

/// Every CSCA key Part 12 allows, to the Part 12 profile, accepted by the Python oracle; the
/// named-curve and RSA ones by `openssl verify` too. The first CRL verifies under each.
#[tokio::test(flavor = "multi_thread")]
async fn csca_certificates_for_every_algorithm() {
    let w = world().await;
    let mut c = w.client().await;
    let cases = [
        ("AT", "ec:P-256", true),
        ("BE", "ec:P-384:explicit", true),
        ("BG", "ec:P-521", true),
        ("CY", "ec:brainpoolP256r1", true),
        ("CZ", "ec:brainpoolP384r1", true),
        ("DK", "ec:brainpoolP512r1", true),
        ("EE", "ec:P-256:named", false),
        ("ES", "ec:brainpoolP384r1:named", false),
        ("FI", "rsa:3072", false),
        ("FR", "rsa-pss:3072", false),
        ("GR", "rsa:4096", false),
    ];
    for (country, key, explicit) in cases {
        let r = create(&mut c, country, key).await;
        let csca = cert(&r.certificate);
        assert_eq!(csca.subject.country(), Some(country));
        assert!(csca.is_self_signed(), "{key}");
        assert!(
            csca.is_ca() && csca.basic_constraints == Some((true, Some(0))),
            "{key}"
        );
        assert!(
            csca.has_key_usage(5) && csca.has_key_usage(6),
            "{key}: keyCertSign, cRLSign"
        );
        assert!(csca.private_key_usage_period.is_some(), "{key}: PKUP");
        assert!(!csca.crl_distribution_points.is_empty(), "{key}: CRLDP");
        assert_eq!(
            marty_icao::algo::spki_has_explicit_ec_params(&csca.spki),
            explicit,
            "{key}"
        );
        let name = w.write(&format!("{country}.der"), &csca.raw);
        let (code, report, shown) = oracle(w.dir.path(), &["cert", &name, "--issuer", &name]);
        assert_eq!(code, Some(0), "{key}: {shown}");
        assert_eq!(report["ok"], true);
        if !explicit {
            openssl_ok(
                w.dir.path(),
                &["x509", "-inform", "DER", "-in", &name, "-out", "ca.pem"],
            );
            let out = openssl_ok(
                w.dir.path(),
                &["verify", "-x509_strict", "-CAfile", "ca.pem", "ca.pem"],
            );
            assert!(out.contains("OK"), "{key}: {out}");
        }
        let crl = marty_icao::crl::Crl::from_der(&r.crl.unwrap().der).unwrap();
        crl.verify_signature(&csca).unwrap();
        assert!(crl.revoked.is_empty());
    }
    // A second CSCA for a country that has one: rollover is the way.
    let again = c
        .create_csca(pb::CreateCscaRequest {
            country: "AT".into(),
            ..Default::default()
        })
        .await;
    assert_code(again, Code::AlreadyExists, "RolloverCsca");
    assert_code(
        c.create_csca(pb::CreateCscaRequest {
            country: "ut".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "two upper-case letters",
    );
    assert_code(
        c.create_csca(pb::CreateCscaRequest {
            country: "UT".into(),
            key_spec: "ec:P-192".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "unknown curve",
    );
    w.app.stop().await.unwrap();
}

/// DSC and Master List Signer certificates from CSRs: profile, chain (marty-icao, openssl),
/// periods capped by policy and by the CSCA, and every way a request can be wrong.
#[tokio::test(flavor = "multi_thread")]
async fn certificates_from_requests() {
    let w = world().await;
    let mut c = w.client().await;
    // No CSCA yet.
    let (_, der) = csr_for("UT", NAMED);
    assert_code(
        issue(&mut c, der.clone(), pb::Profile::DocumentSigner, "UT").await,
        Code::FailedPrecondition,
        "has no CSCA",
    );
    let created = create(&mut c, "UT", "ec:P-256:named").await;
    let csca = cert(&created.certificate);
    // Names a caller gives are bounded and printable.
    for (name, why) in [
        ("C".repeat(65), "more than 64 characters"),
        ("CSCA\0UT".into(), "control or invisible"),
        ("CSCA \u{202E}TU".into(), "invisible formatting"),
    ] {
        assert_code(
            c.create_csca(pb::CreateCscaRequest {
                country: "VV".into(),
                mrz_country: "VVV".into(),
                common_name: name,
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            why,
        );
    }
    // A CSCA that exists is refused before any key is made: an RSA-8192 key would take
    // many seconds of a core, for nothing.
    let started = std::time::Instant::now();
    assert_code(
        c.create_csca(pb::CreateCscaRequest {
            country: "UT".into(),
            key_spec: "rsa:8192".into(),
            ..Default::default()
        })
        .await,
        Code::AlreadyExists,
        "already has a CSCA",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (key, der) = csr_for("UT", NAMED);
    let r = issue(&mut c, der, pb::Profile::DocumentSigner, "UT")
        .await
        .unwrap();
    let dsc = cert(&r.certificate);
    assert!(key.matches(&dsc));
    assert!(dsc.document_signer_problem().is_none());
    assert_eq!(dsc.document_types, Some(vec!["P".to_owned()]));
    assert_eq!(dsc.subject.country(), Some("UT"));
    assert_eq!(dsc.subject.common_name(), Some("Document Signer 1"));
    assert!(dsc.not_after <= csca.not_after);
    let (nb, na) = dsc.private_key_usage_period.unwrap();
    assert!(na.unwrap() - nb.unwrap() <= time::Duration::days(91));
    // The chain by Marty's PA path validation…
    let store = trust::TrustStore::new(vec![csca.clone()], vec![]);
    let path = store.validate(&dsc, time::OffsetDateTime::now_utc());
    assert_eq!(path.outcome, trust::PathOutcome::Valid, "{}", path.reason);
    // …and by OpenSSL, for a named curve.
    w.write("csca.der", &csca.raw);
    w.write("dsc.der", &dsc.raw);
    openssl_ok(
        w.dir.path(),
        &[
            "x509", "-inform", "DER", "-in", "csca.der", "-out", "csca.pem",
        ],
    );
    openssl_ok(
        w.dir.path(),
        &[
            "x509", "-inform", "DER", "-in", "dsc.der", "-out", "dsc.pem",
        ],
    );
    let out = openssl_ok(
        w.dir.path(),
        &["verify", "-x509_strict", "-CAfile", "csca.pem", "dsc.pem"],
    );
    assert!(out.contains("dsc.pem: OK"), "{out}");
    let (code, _, shown) = oracle(w.dir.path(), &["cert", "dsc.der", "--issuer", "csca.der"]);
    assert_eq!(code, Some(0), "{shown}");

    // A Master List Signer: EKU 2.23.136.1.1.3, no documentTypeList.
    let (_, der) = csr_for("UT", KeySpec::Rsa { bits: 2048 });
    let mls = cert(
        &issue(&mut c, der, pb::Profile::MasterListSigner, "UT")
            .await
            .unwrap()
            .certificate,
    );
    assert!(
        mls.ext_key_usage
            .iter()
            .any(|o| o.to_string() == oid::MASTER_LIST_SIGNER_EKU)
    );
    assert!(mls.document_types.is_none());

    // Requests that are wrong, each said why.
    let (_, de) = csr_for("DE", NAMED);
    assert_code(
        issue(&mut c, de, pb::Profile::DocumentSigner, "UT").await,
        Code::InvalidArgument,
        "countryName of issuer and subject must match",
    );
    // A key too weak to certify (RSA-1024, which KeyPair::generate would refuse to make).
    let weak = {
        let private =
            openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
        let spki = private.public_key_to_der().unwrap();
        KeyPair {
            private: private.into(),
            spki,
            pss: false,
        }
    };
    let name = Name::build(&[(oid::COUNTRY, "UT"), (oid::COMMON_NAME, "Weak signer")]);
    // RSA-2048 with public exponent 3: too small an exponent (e = 1 would make the private key
    // public); OpenSSL generates such keys when asked.
    let small_e = {
        let e = openssl::bn::BigNum::from_u32(3).unwrap();
        let rsa = openssl::rsa::Rsa::generate_with_e(2048, &e).unwrap();
        let private = openssl::pkey::PKey::from_rsa(rsa).unwrap();
        let spki = private.public_key_to_der().unwrap();
        KeyPair {
            private: private.into(),
            spki,
            pss: false,
        }
    };
    assert_code(
        issue(
            &mut c,
            marty_icao::csr::build(&name, &small_e).unwrap(),
            pb::Profile::DocumentSigner,
            "UT",
        )
        .await,
        Code::InvalidArgument,
        "public exponent 3 is not allowed",
    );
    assert_code(
        issue(
            &mut c,
            marty_icao::csr::build(&name, &weak).unwrap(),
            pb::Profile::DocumentSigner,
            "UT",
        )
        .await,
        Code::InvalidArgument,
        "has 1024 bits",
    );
    let (_, mut forged) = csr_for("UT", NAMED);
    let n = forged.len();
    forged[n - 5] ^= 0x55;
    assert_code(
        issue(&mut c, forged, pb::Profile::DocumentSigner, "UT").await,
        Code::InvalidArgument,
        "signature does not verify",
    );
    assert_code(
        issue(
            &mut c,
            b"\x30\x03\x02\x01".to_vec(),
            pb::Profile::DocumentSigner,
            "UT",
        )
        .await,
        Code::InvalidArgument,
        "not a valid PKCS#10",
    );
    // A request with a 20,000-character organizationName is refused, and only its first
    // 4 KiB are kept: refusing requests must not fill the disk.
    let big = {
        let key = KeyPair::generate(NAMED).unwrap();
        let org = "O".repeat(20_000);
        let name = Name::build(&[
            (oid::COUNTRY, "UT"),
            (oid::ORGANIZATION, &org),
            (oid::COMMON_NAME, "DS"),
        ]);
        marty_icao::csr::build(&name, &key).unwrap()
    };
    assert_code(
        issue(&mut c, big, pb::Profile::DocumentSigner, "UT").await,
        Code::InvalidArgument,
        "organizationName has more than 64 characters",
    );
    // Nested 20,000 deep: refused, the service stays up.
    let mut deep = Vec::new();
    for _ in 0..20_000 {
        deep.extend([0x30, 0x80]);
    }
    deep.extend(std::iter::repeat_n(0, 40_000));
    assert_code(
        issue(&mut c, deep, pb::Profile::DocumentSigner, "UT").await,
        Code::InvalidArgument,
        "",
    );
    assert_code(
        issue(&mut c, vec![], pb::Profile::DocumentSigner, "UT").await,
        Code::InvalidArgument,
        "empty",
    );
    let (_, der) = csr_for("UT", NAMED);
    assert_code(
        issue(&mut c, der.clone(), pb::Profile::Unspecified, "UT").await,
        Code::InvalidArgument,
        "profile must be",
    );
    assert_code(
        c.issue_certificate(pb::IssueCertificateRequest {
            csr_der: der.clone(),
            profile: pb::Profile::DocumentSigner as i32,
            country: "UT".into(),
            validity_days: 20_000,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "exceeds the policy",
    );
    // The decisions on well-formed requests are recorded.
    let mut conn = w.app_db().await;
    let (issued, rejected): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where status = 'issued'), count(*) filter (where status = 'rejected') from certificate_requests",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((issued, rejected), (2, 7));
    let longest: i32 =
        sqlx::query_scalar("select max(octet_length(csr_der)) from certificate_requests")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(longest <= 4096, "{longest}");

    // A retired CSCA (after a rollover) and a revoked one issue nothing.
    let old_serial = created.certificate.as_ref().unwrap().serial_hex.clone();
    c.rollover_csca(pb::RolloverCscaRequest {
        country: "UT".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_code(
        c.issue_certificate(pb::IssueCertificateRequest {
            csr_der: der.clone(),
            profile: pb::Profile::DocumentSigner as i32,
            country: "UT".into(),
            issuer_serial_hex: old_serial,
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "retired",
    );
    let current = c
        .get_csca_data(pb::GetCscaDataRequest {
            country: "UT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    c.revoke_certificate(pb::RevokeCertificateRequest {
        serial_hex: current.serial_hex,
        reason: pb::RevocationReason::CaCompromise as i32,
        country: "UT".into(),
    })
    .await
    .unwrap();
    assert_code(
        issue(&mut c, der, pb::Profile::DocumentSigner, "UT").await,
        Code::FailedPrecondition,
        "revoked",
    );
    w.app.stop().await.unwrap();
}

/// Revocation: recorded with its reason, on a CRL at once (no entry extensions), which
/// `openssl crl -CAfile` verifies; statuses, lookups and errors.
#[tokio::test(flavor = "multi_thread")]
async fn revocations_and_crls() {
    let w = world().await;
    let mut c = w.client().await;
    let created = create(&mut c, "UT", "ec:P-256:named").await;
    let csca = cert(&created.certificate);
    let first_crl = created.crl.unwrap();
    assert_eq!(first_crl.crl_number, "1");
    let mut dscs = Vec::new();
    for _ in 0..3 {
        let (_, der) = csr_for("UT", NAMED);
        dscs.push(
            issue(&mut c, der, pb::Profile::DocumentSigner, "UT")
                .await
                .unwrap()
                .certificate
                .unwrap(),
        );
    }
    let revoked = c
        .revoke_certificate(pb::RevokeCertificateRequest {
            serial_hex: dscs[0].serial_hex.to_uppercase(),
            reason: pb::RevocationReason::KeyCompromise as i32,
            country: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let rc = revoked.certificate.unwrap();
    assert_eq!(rc.status, pb::CertificateStatus::Revoked as i32);
    assert_eq!(
        rc.revocation_reason,
        pb::RevocationReason::KeyCompromise as i32
    );
    let crl = revoked.crl.unwrap();
    assert_eq!(crl.crl_number, "2");
    assert_eq!(crl.revoked_serials_hex, vec![dscs[0].serial_hex.clone()]);
    // OpenSSL verifies the CRL under the CSCA and sees no entry extensions.
    w.write("csca.der", &csca.raw);
    w.write("crl.der", &crl.der);
    openssl_ok(
        w.dir.path(),
        &[
            "x509", "-inform", "DER", "-in", "csca.der", "-out", "csca.pem",
        ],
    );
    let text = openssl_ok(
        w.dir.path(),
        &[
            "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "csca.pem", "-noout", "-text",
        ],
    );
    assert!(text.contains("verify OK"), "{text}");
    assert!(text.contains(&dscs[0].serial_hex.to_uppercase()), "{text}");
    assert!(!text.contains("CRL entry extensions"), "{text}");
    let (code, _, shown) = oracle(w.dir.path(), &["crl", "crl.der", "--issuer", "csca.der"]);
    assert_eq!(code, Some(0), "{shown}");
    // The reason is recorded; the status follows.
    let status = c
        .get_certificate_status(pb::GetCertificateStatusRequest {
            serial_hex: dscs[0].serial_hex.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, pb::CertificateStatus::Revoked as i32);
    let before = c
        .get_certificate_status(pb::GetCertificateStatusRequest {
            serial_hex: dscs[0].serial_hex.clone(),
            at: Some(prost_types::Timestamp {
                seconds: time::OffsetDateTime::now_utc().unix_timestamp() - 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        before.status,
        pb::CertificateStatus::NotYetValid as i32,
        "an hour ago it did not exist yet"
    );
    let good = c
        .get_certificate_status(pb::GetCertificateStatusRequest {
            serial_hex: dscs[1].serial_hex.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(good.status, pb::CertificateStatus::Valid as i32);
    let mut conn = w.app_db().await;
    let reason: i16 =
        sqlx::query_scalar("select revocation_reason from certificates where status = 'revoked'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(reason, 1);
    // Errors.
    let again = c
        .revoke_certificate(pb::RevokeCertificateRequest {
            serial_hex: dscs[0].serial_hex.clone(),
            reason: 1,
            country: String::new(),
        })
        .await;
    assert_code(again, Code::FailedPrecondition, "already revoked");
    for (reason, why) in [
        (6, "certificateHold"),
        (8, "removeFromCRL"),
        (7, "unknown revocation reason"),
    ] {
        let r = c
            .revoke_certificate(pb::RevokeCertificateRequest {
                serial_hex: dscs[1].serial_hex.clone(),
                reason,
                country: String::new(),
            })
            .await;
        assert_code(r, Code::InvalidArgument, why);
    }
    let unknown = c
        .get_certificate(pb::GetCertificateRequest {
            serial_hex: "7f".repeat(16),
            ..Default::default()
        })
        .await;
    assert_code(unknown, Code::NotFound, "no certificate with serial");
    assert_code(
        c.get_certificate(pb::GetCertificateRequest {
            serial_hex: "zz".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "serial_hex",
    );
    let by_fp = c
        .get_certificate(pb::GetCertificateRequest {
            fingerprint_sha256: dscs[2].fingerprint_sha256.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_fp.serial_hex, dscs[2].serial_hex);
    // IssueCrl and GetLatestCrl.
    let issued = c
        .issue_crl(pb::IssueCrlRequest {
            country: "UT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(issued.crl_number, "3");
    let latest = c
        .get_latest_crl(pb::GetLatestCrlRequest {
            country: "UT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.der, issued.der);
    assert_code(
        c.get_latest_crl(pb::GetLatestCrlRequest {
            country: "DE".into(),
        })
        .await,
        Code::NotFound,
        "no CRL",
    );
    w.app.stop().await.unwrap();
}

/// Rollover: a new CSCA and a link certificate that the old key signed for the new one; what
/// is issued next comes from the new key, and CRLs too.
#[tokio::test(flavor = "multi_thread")]
async fn rollover_links_the_old_key_to_the_new() {
    let w = world().await;
    let mut c = w.client().await;
    let old = cert(&create(&mut c, "UT", "ec:brainpoolP256r1").await.certificate);
    let r = c
        .rollover_csca(pb::RolloverCscaRequest {
            country: "UT".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let new = cert(&r.new_csca);
    let link = cert(&r.link);
    assert_eq!(r.previous_csca.unwrap().serial_hex, old.serial_hex());
    assert!(new.is_self_signed());
    assert_eq!(link.spki, new.spki, "the link certifies the new key");
    link.verify_signature_with(&old.spki).unwrap();
    assert!(link.verify_signature_with(&new.spki).is_err());
    assert!(!link.name_change);
    assert!(link.not_after <= old.not_after);
    assert_eq!(link.authority_key_id, old.subject_key_id);
    assert!(
        marty_icao::algo::spki_has_explicit_ec_params(&new.spki),
        "the kind of key is kept"
    );
    // The link establishes trust in the new key for a relying party that trusted the old one.
    let mut store = trust::TrustStore::new(vec![old.clone()], vec![]);
    store.add_links(vec![link.clone(), new.clone()]);
    let (_, der) = csr_for("UT", NAMED);
    let dsc = cert(
        &issue(&mut c, der, pb::Profile::DocumentSigner, "UT")
            .await
            .unwrap()
            .certificate,
    );
    dsc.verify_signature_with(&new.spki).unwrap();
    let path = store.validate(&dsc, time::OffsetDateTime::now_utc());
    assert_eq!(path.outcome, trust::PathOutcome::Valid, "{}", path.reason);
    let w_dir = w.dir.path();
    std::fs::write(w_dir.join("old.der"), &old.raw).unwrap();
    std::fs::write(w_dir.join("link.der"), &link.raw).unwrap();
    let (code, _, shown) = oracle(w_dir, &["cert", "link.der", "--issuer", "old.der"]);
    assert_eq!(code, Some(0), "{shown}");
    // The reference's name for the operation, and for the current CSCA.
    let again = c
        .renew_certificate(pb::RolloverCscaRequest {
            country: "UT".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let newest = c
        .get_csca_data(pb::GetCscaDataRequest {
            country: "UT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(newest.serial_hex, again.new_csca.unwrap().serial_hex);
    let crl = c
        .get_latest_crl(pb::GetLatestCrlRequest {
            country: "UT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let crl = marty_icao::crl::Crl::from_der(&crl.der).unwrap();
    crl.verify_signature(&Certificate::from_der(&newest.der).unwrap())
        .unwrap();
    w.app.stop().await.unwrap();
}

/// ListCertificates filters and pages; CheckExpiringCertificates; statuses computed.
#[tokio::test(flavor = "multi_thread")]
async fn listing_paging_and_expiry() {
    let w = world().await;
    let mut c = w.client().await;
    create(&mut c, "UT", "ec:P-256:named").await;
    create(&mut c, "DE", "ec:P-256:named").await;
    let mut serials = Vec::new();
    for i in 0..7 {
        let country = if i % 2 == 0 { "UT" } else { "DE" };
        let (_, der) = csr_for(country, NAMED);
        serials.push(
            issue(&mut c, der, pb::Profile::DocumentSigner, country)
                .await
                .unwrap()
                .certificate
                .unwrap()
                .serial_hex,
        );
    }
    c.revoke_certificate(pb::RevokeCertificateRequest {
        serial_hex: serials[0].clone(),
        reason: 4,
        country: String::new(),
    })
    .await
    .unwrap();
    let list = |country: &str,
                t: pb::CertificateType,
                s: pb::CertificateStatus,
                page_size: u32,
                token: String| pb::ListCertificatesRequest {
        country: country.into(),
        r#type: t as i32,
        status: s as i32,
        page_size,
        page_token: token,
    };
    let all = c
        .list_certificates(list(
            "",
            pb::CertificateType::Unspecified,
            pb::CertificateStatus::Unspecified,
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.certificates.len(), 9);
    assert!(all.next_page_token.is_empty());
    let ut_dsc = c
        .list_certificates(list(
            "UT",
            pb::CertificateType::DocumentSigner,
            pb::CertificateStatus::Unspecified,
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ut_dsc.certificates.len(), 4);
    let revoked = c
        .list_certificates(list(
            "",
            pb::CertificateType::Unspecified,
            pb::CertificateStatus::Revoked,
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        revoked
            .certificates
            .iter()
            .map(|c| c.serial_hex.clone())
            .collect::<Vec<_>>(),
        vec![serials[0].clone()]
    );
    let valid = c
        .list_certificates(list(
            "",
            pb::CertificateType::Unspecified,
            pb::CertificateStatus::Valid,
            0,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(valid.certificates.len(), 8);
    // Pages of 2 cover everything once, in a stable order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_certificates(list(
                "",
                pb::CertificateType::Unspecified,
                pb::CertificateStatus::Unspecified,
                2,
                token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.certificates.len() <= 2);
        seen.extend(page.certificates.into_iter().map(|c| c.serial_hex));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 9);
    // Exactly a page's worth: no token that leads to an empty page.
    let whole = c
        .list_certificates(list(
            "",
            pb::CertificateType::Unspecified,
            pb::CertificateStatus::Unspecified,
            9,
            String::new(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.certificates.len(), 9);
    assert!(whole.next_page_token.is_empty());
    assert_eq!(
        seen,
        all.certificates
            .iter()
            .map(|c| c.serial_hex.clone())
            .collect::<Vec<_>>()
    );
    assert_code(
        c.list_certificates(list(
            "",
            pb::CertificateType::Unspecified,
            pb::CertificateStatus::Unspecified,
            2,
            "garbage".into(),
        ))
        .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_code(
        c.list_certificates(list(
            "",
            pb::CertificateType::Unspecified,
            pb::CertificateStatus::Unspecified,
            5000,
            String::new(),
        ))
        .await,
        Code::InvalidArgument,
        "page_size",
    );
    // DSCs live 3743 days, CSCAs 4838: within 4000 days only the (unrevoked) DSCs expire.
    let expiring = c
        .check_expiring_certificates(pb::CheckExpiringCertificatesRequest {
            days: 4000,
            country: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expiring.certificates.len(), 6);
    assert!(
        expiring
            .certificates
            .iter()
            .all(|c| c.r#type == pb::CertificateType::DocumentSigner as i32)
    );
    let none = c
        .check_expiring_certificates(pb::CheckExpiringCertificatesRequest {
            days: 30,
            country: "UT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.certificates.is_empty());

    // SummarizeCertificates counts what the listing shows, status by status. One DE DSC made
    // expired and one not yet valid, in the database, so that every bucket holds one.
    let mut conn = w.app_db().await;
    for (serial, not_before, not_after) in [
        (
            &serials[1],
            "now() - interval '10 days'",
            "now() - interval '1 day'",
        ),
        (
            &serials[3],
            "now() + interval '1 day'",
            "now() + interval '400 days'",
        ),
    ] {
        sqlx::query(&format!(
            "update certificates set not_before = {not_before}, not_after = {not_after}
              where serial_number = decode($1, 'hex')"
        ))
        .bind(serial)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let summary = |days: u32| pb::SummarizeCertificatesRequest {
        expiring_days: days,
    };
    let got = c
        .summarize_certificates(summary(4000))
        .await
        .unwrap()
        .into_inner()
        .summaries;
    let row = |country: &str, t: pb::CertificateType| {
        got.iter()
            .find(|s| s.country == country && s.r#type == t as i32)
            .unwrap_or_else(|| panic!("no {country} {t:?}: {got:?}"))
            .clone()
    };
    let counts = |s: &pb::CertificateSummary| {
        (
            s.total,
            s.valid,
            s.not_yet_valid,
            s.expired,
            s.revoked,
            s.expiring,
        )
    };
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        counts(&row("UT", pb::CertificateType::Csca)),
        (1, 1, 0, 0, 0, 0)
    );
    // UT: four DSCs, the first revoked; the other three expire within 4000 days.
    assert_eq!(
        counts(&row("UT", pb::CertificateType::DocumentSigner)),
        (4, 3, 0, 0, 1, 3)
    );
    assert_eq!(
        counts(&row("DE", pb::CertificateType::DocumentSigner)),
        (3, 1, 1, 1, 0, 1)
    );
    let de = row("DE", pb::CertificateType::DocumentSigner);
    let soonest = marty_proto::offset_date_time(de.next_expiry.as_ref().unwrap()).unwrap();
    let in_400_days = time::OffsetDateTime::now_utc() + time::Duration::days(400);
    assert!(
        (soonest - in_400_days).abs() < time::Duration::minutes(5),
        "the not-yet-valid one ends first; the expired one does not count: {soonest}"
    );
    // The listing's count of one country's DSCs in one status.
    let world = &w;
    let listed = |country: &'static str, s: pb::CertificateStatus| async move {
        let mut c = world.client().await;
        let l = list(
            country,
            pb::CertificateType::DocumentSigner,
            s,
            0,
            String::new(),
        );
        c.list_certificates(l)
            .await
            .unwrap()
            .into_inner()
            .certificates
            .len() as u64
    };
    use pb::CertificateStatus::{Expired, NotYetValid, Revoked, Valid};
    assert_eq!(listed("DE", Valid).await, de.valid);
    assert_eq!(listed("DE", Expired).await, de.expired);
    assert_eq!(listed("DE", NotYetValid).await, de.not_yet_valid);
    let ut = row("UT", pb::CertificateType::DocumentSigner);
    assert_eq!(listed("UT", Revoked).await, ut.revoked);
    // 30 days (the default): nothing expires that soon.
    let soon = c
        .summarize_certificates(summary(0))
        .await
        .unwrap()
        .into_inner()
        .summaries;
    assert!(soon.iter().all(|s| s.expiring == 0), "{soon:?}");
    assert_code(
        c.summarize_certificates(summary(36601)).await,
        Code::InvalidArgument,
        "expiring_days",
    );
    w.app.stop().await.unwrap();
}

/// Every change commits with its events — the DER inside, so that consumers need not call
/// back — or not at all.
#[tokio::test(flavor = "multi_thread")]
async fn events_carry_the_der_and_commit_with_the_change() {
    let w = world().await;
    let mut c = w.client().await;
    let created = create(&mut c, "UT", "ec:P-256:named").await;
    let (_, der) = csr_for("UT", NAMED);
    let dsc = issue(&mut c, der, pb::Profile::DocumentSigner, "UT")
        .await
        .unwrap()
        .certificate
        .unwrap();
    c.revoke_certificate(pb::RevokeCertificateRequest {
        serial_hex: dsc.serial_hex.clone(),
        reason: 1,
        country: String::new(),
    })
    .await
    .unwrap();
    // Read them from the stream, as any consumer would.
    let js = w.nats.jetstream().await;
    let stream = {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = js.get_stream("MARTY").await
                && s.info().await.unwrap().state.messages >= 5
            {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the relay did not publish 5 events"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut events = Vec::new();
    for seq in 1..=5 {
        let m = stream.get_raw_message(seq).await.unwrap();
        let env: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        events.push((m.subject.to_string(), env));
    }
    let subjects: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "marty.csca.certificate.issued",
            "marty.csca.crl.issued",
            "marty.csca.certificate.issued",
            "marty.csca.certificate.revoked",
            "marty.csca.crl.issued"
        ]
    );
    let b64 = |v: &serde_json::Value| openssl::base64::decode_block(v.as_str().unwrap()).unwrap();
    assert_eq!(
        b64(&events[0].1["payload"]["der"]),
        created.certificate.unwrap().der
    );
    assert_eq!(b64(&events[2].1["payload"]["der"]), dsc.der);
    assert_eq!(events[3].1["payload"]["reason"], "keyCompromise");
    assert_eq!(events[3].1["payload"]["serial_hex"], dsc.serial_hex);
    let crl = marty_icao::crl::Crl::from_der(&b64(&events[4].1["payload"]["der"])).unwrap();
    assert_eq!(crl.revoked.len(), 1);

    // An event that cannot be written takes its change with it: no half-written state.
    w.db.exec("marty_csca", "revoke insert on outbox from marty_csca_app")
        .await;
    let r = c
        .create_csca(pb::CreateCscaRequest {
            country: "DE".into(),
            key_spec: "ec:P-256:named".into(),
            ..Default::default()
        })
        .await;
    assert_code(r, Code::Internal, "internal error (reference ");
    let mut conn = w.app_db().await;
    let (keys, certs, crls): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from csca_keys where country_code = 'DE'),
                (select count(*) from certificates where country_code = 'DE'),
                (select count(*) from crls where country_code = 'DE')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((keys, certs, crls), (0, 0, 0));
    w.db.exec("marty_csca", "grant insert on outbox to marty_csca_app")
        .await;
    create(&mut c, "DE", "ec:P-256:named").await;
    w.app.stop().await.unwrap();
}

/// The scheduler issues a CRL before the latest one's nextUpdate (here: at start, for a CRL
/// that the clock has caught up with).
#[tokio::test(flavor = "multi_thread")]
async fn crls_are_renewed_before_next_update() {
    let mut w = world().await;
    let mut c = w.client().await;
    create(&mut c, "UT", "ec:P-256:named").await;
    w.db
        .exec("marty_csca", "update crls set next_update = now() + interval '1 hour', this_update = now() - interval '29 days'")
        .await;
    w.restart(&[]).await;
    let mut c = w.client().await;
    // The scheduler's first pass runs as the service starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let latest = loop {
        let latest = c
            .get_latest_crl(pb::GetLatestCrlRequest {
                country: "UT".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if latest.crl_number == "2" {
            break latest;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new CRL: {}",
            latest.crl_number
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let next = latest.next_update.unwrap().seconds - latest.this_update.unwrap().seconds;
    assert_eq!(next, 30 * 86400);
    // A fresh CRL is left alone.
    w.restart(&[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut c = w.client().await;
    let latest = c
        .get_latest_crl(pb::GetLatestCrlRequest {
            country: "UT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.crl_number, "2");
    w.app.stop().await.unwrap();
}

/// What the readonly role (backups, support) sees of the key table is no private key that
/// loads; a KEK rotation re-wraps the data keys and leaves the key ciphertexts as they were.
#[tokio::test(flavor = "multi_thread")]
async fn keys_are_never_stored_in_clear_and_keks_rotate() {
    let mut w = world().await;
    let mut c = w.client().await;
    for (country, key) in [
        ("UT", "ec:P-256:named"),
        ("DE", "rsa:3072"),
        ("FR", "ec:brainpoolP256r1"),
    ] {
        create(&mut c, country, key).await;
    }
    let config = w.db.config();
    let db = config.database(marty_config::Service::Csca);
    let readonly = marty_db::ConnectTarget::role(db, marty_config::Role::Readonly).unwrap();
    let mut ro = readonly.connect().await.unwrap();
    let rows = sqlx::query("select * from csca_keys")
        .fetch_all(&mut ro)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let mut blobs = Vec::new();
    for row in &rows {
        for i in 0..row.len() {
            if let Ok(Some(b)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                blobs.push(b);
            }
        }
    }
    assert!(blobs.len() >= 15);
    for b in &blobs {
        assert!(openssl::pkey::PKey::private_key_from_der(b).is_err());
        assert!(openssl::pkey::PKey::private_key_from_pkcs8(b).is_err());
        assert!(openssl::ec::EcKey::private_key_from_der(b).is_err());
        assert!(openssl::rsa::Rsa::private_key_from_der(b).is_err());
        assert!(openssl::pkey::PKey::private_key_from_pem(b).is_err());
    }
    // With the KEK they do open, and their private part is in no column.
    let keks = config.kek(marty_config::Service::Csca).unwrap();
    let store = marty_keys::EnvelopeKeyStore::from_config(marty_config::Service::Csca, &keks);
    let sealed_rows = sqlx::query(&format!(
        "select {} from csca_keys",
        marty_keys::table::SEALED_COLUMNS
    ))
    .fetch_all(&mut ro)
    .await
    .unwrap();
    for row in &sealed_rows {
        let sealed = marty_keys::SealedKey::from_row(row).unwrap();
        let pair = marty_keys::KeyStore::open(&store, &sealed).unwrap();
        let private = pair.private.software().unwrap();
        let secret = match private.ec_key() {
            Ok(ec) => ec.private_key().to_vec(),
            Err(_) => private.rsa().unwrap().d().to_vec(),
        };
        // A big-endian scalar drops leading zero bytes: 1 key in 256 has 31 of 32.
        assert!(secret.len() >= 24, "{}", secret.len());
        let probe = &secret[..24];
        assert!(
            blobs
                .iter()
                .all(|b| !b.windows(probe.len()).any(|w| w == probe))
        );
    }
    ro.close().await.unwrap();

    // Rotate the KEK: new one current, old one previous.
    let old = hex(keks.current.bytes());
    let new = "5b2a8c0e7d1f4a3b9c6e0d2f8a7b1c4e3d5f6a8b9c0d1e2f3a4b5c6d7e8f9a0b";
    let before: Vec<(Vec<u8>, Vec<u8>, String)> =
        sqlx::query_as("select encrypted_private_key, wrapped_data_key, key_encryption_key_id from csca_keys order by id")
            .fetch_all(&mut w.app_db().await)
            .await
            .unwrap();
    w.restart(&[("MARTY_CSCA_KEK", new), ("MARTY_CSCA_PREVIOUS_KEK", &old)])
        .await;
    let after: Vec<(Vec<u8>, Vec<u8>, String)> =
        sqlx::query_as("select encrypted_private_key, wrapped_data_key, key_encryption_key_id from csca_keys order by id")
            .fetch_all(&mut w.app_db().await)
            .await
            .unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.0, b.0, "the private key's ciphertext is untouched");
        assert_ne!(a.1, b.1, "the data key is wrapped anew");
        assert_ne!(a.2, b.2);
    }
    // The new KEK alone now suffices; the old one alone no longer does.
    w.restart(&[("MARTY_CSCA_KEK", new)]).await;
    let mut c = w.client().await;
    let (_, der) = csr_for("UT", NAMED);
    issue(&mut c, der.clone(), pb::Profile::DocumentSigner, "UT")
        .await
        .unwrap();
    // A service given only the old KEK refuses to start rather than fail key by key later.
    let refused = spawn_app(
        &marty_csca::DESCRIPTOR,
        w.db.service_env(&w.nats, &[("MARTY_CSCA_KEK", &old)]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("which this service is not configured with"),
        "{refused}"
    );
    assert!(
        !refused.contains(&old) && !refused.contains(new),
        "{refused}"
    );
    let mut c = w.client().await;
    issue(&mut c, der, pb::Profile::DocumentSigner, "UT")
        .await
        .unwrap();
    w.app.stop().await.unwrap();
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A service started on a database that is not its own refuses to start, saying why; one
/// whose database goes away reports not ready, and ready again when it is back.
#[tokio::test(flavor = "multi_thread")]
async fn the_service_proves_its_database_and_reports_readiness() {
    let db = TestDb::start().await;
    // Setup provisions every service's database; the CSCA's gets only its first two
    // migrations, as a database left behind by an older build would.
    db.provision_services(&[]).await;
    let older = tempfile::tempdir().unwrap();
    for m in marty_csca::MIGRATOR.iter().take(2) {
        std::fs::write(
            older.path().join(format!(
                "{}_{}.sql",
                m.version,
                m.description.replace(' ', "_")
            )),
            m.sql.as_ref(),
        )
        .unwrap();
    }
    let older = sqlx::migrate::Migrator::new(older.path()).await.unwrap();
    let config = db.config();
    marty_db::migrate::migrate(config.database(marty_config::Service::Csca), &older)
        .await
        .unwrap();
    let nats = TestNats::start();
    let refused = spawn_app(&marty_csca::DESCRIPTOR, db.service_env(&nats, &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("migration 20261201000003") && refused.contains("marty db migrate"),
        "{refused}"
    );
    db.provision_services(&[&marty_csca::DESCRIPTOR]).await;
    let port = db.port.to_string();
    let other = format!("postgres://127.0.0.1:{port}/marty_document_signer");
    let refused = spawn_app(
        &marty_csca::DESCRIPTOR,
        db.service_env(&nats, &[("CSCA_DATABASE_URL", &other)]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("refusing to start csca")
            && refused.contains("may not connect to database marty_document_signer"),
        "{refused}"
    );
    // Another spelling of the same server is the same server.
    let same = format!("postgres://localhost:{port}/marty_csca");
    let app = spawn_app(
        &marty_csca::DESCRIPTOR,
        db.service_env(&nats, &[("CSCA_DATABASE_URL", &same)]),
    )
    .await
    .unwrap();
    app.stop().await.unwrap();
    // Not marked by setup (a copied database).
    // Not marked by setup (a copied database).
    db.exec("marty_csca", "comment on database marty_csca is null")
        .await;
    let refused = spawn_app(&marty_csca::DESCRIPTOR, db.service_env(&nats, &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("marty db setup"), "{refused}");
    db.provision_services(&[&marty_csca::DESCRIPTOR]).await;

    let app = spawn_app(&marty_csca::DESCRIPTOR, db.service_env(&nats, &[]))
        .await
        .unwrap();
    let (code, body) = curl(&app.http_url("/readyz"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(curl(&app.http_url("/healthz")).0, 200);
    if db.is_private() {
        db.stop_server();
        let (code, body) = curl(&app.http_url("/readyz"));
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("database"), "{body}");
        assert_eq!(curl(&app.http_url("/healthz")).0, 200, "alive all the same");
        let mut c = app.csca().await;
        let r = c
            .get_csca_data(pb::GetCscaDataRequest {
                country: "UT".into(),
            })
            .await;
        assert_code(r, Code::Unavailable, "database is unreachable");
        db.start_server();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while curl(&app.http_url("/readyz")).0 != 200 {
            assert!(std::time::Instant::now() < deadline, "not ready again");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    app.stop().await.unwrap();
}

/// gRPC health and reflection as an independent client sees them, and the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn health_reflection_and_metrics() {
    let w = world().await;
    let target = format!("127.0.0.1:{}", w.app.grpc_port);
    let (code, listed, shown) = marty_testkit::tools::grpc_probe(&["list", &target]);
    assert_eq!(code, Some(0), "{shown}");
    let services: Vec<&str> = listed["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in [
        "marty.csca.v1.CscaService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(&s), "{services:?}");
    }
    assert!(
        !services.iter().any(|s| s.contains("signer")),
        "only what this process serves: {services:?}"
    );
    let (code, health, shown) =
        marty_testkit::tools::grpc_probe(&["health", &target, "marty.csca.v1.CscaService"]);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(health["response"]["status"], "SERVING");
    // A call built from reflection alone.
    let (code, created, shown) = marty_testkit::tools::grpc_probe(&[
        "call",
        &target,
        "marty.csca.v1.CscaService/CreateCsca",
        r#"{"country": "UT", "keySpec": "ec:P-256:named"}"#,
    ]);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(created["response"]["certificate"]["country"], "UT");
    let (code, missing, _) = marty_testkit::tools::grpc_probe(&[
        "call",
        &target,
        "marty.csca.v1.CscaService/GetCscaData",
        r#"{"country": "DE"}"#,
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(missing["code"], "NOT_FOUND");
    let (status, metrics) = curl(&w.app.http_url("/metrics"));
    assert_eq!(status, 200);
    let migration_line = format!(
        r#"marty_migration_version{{service="csca"}} {}"#,
        marty_csca::MIGRATOR.iter().last().unwrap().version
    );
    for needle in [
        r#"marty_grpc_requests_total{service="csca",method="marty.csca.v1.CscaService/CreateCsca",code="OK"} 1"#,
        r#"marty_grpc_requests_total{service="csca",method="marty.csca.v1.CscaService/GetCscaData",code="NOT_FOUND"} 1"#,
        r#"marty_grpc_request_duration_seconds_count{service="csca",method="marty.csca.v1.CscaService/CreateCsca"} 1"#,
        r#"marty_db_pool_connections{service="csca",state="idle"}"#,
        r#"marty_db_pool_waiting{service="csca"} 0"#,
        migration_line.as_str(),
        r#"marty_outbox_backlog{service="csca"}"#,
        r#"marty_outbox_oldest_age_seconds{service="csca"}"#,
        r#"marty_ready{service="csca"} 1"#,
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    // A client cannot mint label values: a path the server does not implement counts as
    // `unknown`.
    let raw = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--http2-prior-knowledge",
            "-X",
            "POST",
            "-H",
            "content-type: application/grpc",
        ])
        .arg(format!("http://{target}/marty.csca.v1.CscaService/Nope"))
        .status()
        .unwrap();
    assert!(raw.success());
    let (_, metrics) = curl(&w.app.http_url("/metrics"));
    assert!(!metrics.contains("Nope"), "{metrics}");
    assert!(
        metrics.contains(r#"method="unknown",code="UNIMPLEMENTED"} 1"#),
        "{metrics}"
    );
    w.app.stop().await.unwrap();
}
