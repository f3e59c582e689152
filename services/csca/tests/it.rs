//! The CSCA service as its clients meet it: a real process on port 0, a real PostgreSQL and
//! NATS, typed gRPC calls.

#![allow(clippy::unwrap_used)]

use marty_icao::issue::{KeyPair, KeySpec};
use marty_proto::csca::v1 as pb;
use marty_testkit::{TestApp, TestDb, TestNats, spawn_app};

struct World {
    _db: TestDb,
    _nats: TestNats,
    app: TestApp,
}

async fn world() -> World {
    let db = TestDb::start().await;
    db.provision_services(&[&marty_csca::DESCRIPTOR]).await;
    let nats = TestNats::start();
    let app = spawn_app(&marty_csca::DESCRIPTOR, db.service_env(&nats, &[]))
        .await
        .unwrap();
    World {
        _db: db,
        _nats: nats,
        app,
    }
}

fn csr(country: &str, spec: KeySpec) -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate(spec).unwrap();
    let name = marty_icao::name::Name::build(&[
        (marty_icao::oid::COUNTRY, country),
        (marty_icao::oid::COMMON_NAME, "Document Signer test"),
    ]);
    let der = marty_icao::csr::build(&name, &key).unwrap();
    (key, der)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_issue_revoke() {
    let w = world().await;
    let mut c = w.app.csca().await;
    let created = c
        .create_csca(pb::CreateCscaRequest {
            country: "UT".into(),
            key_spec: "ec:P-256:named".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let csca = created.certificate.unwrap();
    assert_eq!(csca.country, "UT");
    assert!(created.crl.is_some());
    let (_key, der) = csr(
        "UT",
        KeySpec::Ec {
            curve: marty_icao::issue::Curve::P256,
            explicit: false,
        },
    );
    let issued = c
        .issue_certificate(pb::IssueCertificateRequest {
            csr_der: der,
            profile: pb::Profile::DocumentSigner as i32,
            country: "UT".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let dsc = issued.certificate.unwrap();
    let revoked = c
        .revoke_certificate(pb::RevokeCertificateRequest {
            serial_hex: dsc.serial_hex.clone(),
            reason: pb::RevocationReason::KeyCompromise as i32,
            country: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        revoked.crl.unwrap().revoked_serials_hex,
        vec![dsc.serial_hex]
    );
    w.app.stop().await.unwrap();
}
