//! Marty's own certificates, SODs, CRLs and master lists: built to the Part 12 profiles, parsed
//! back, and accepted by Marty's own verifiers. (Independent verifiers — openssl and a Python
//! oracle — check the same artefacts in the CLI's integration tests.)

#![allow(clippy::unwrap_used)]

use marty_icao::cert::{Certificate, CertificateKind, key_usage};
use marty_icao::cms::SidChoice;
use marty_icao::crl::{self, Crl};
use marty_icao::issue::{self, CertificateRequest, Curve, KeyPair, KeySpec, Period, Subject};
use marty_icao::masterlist::{self, MasterList};
use marty_icao::pa::{self, DataGroupStatus, Verdict};
use marty_icao::sod::{DataGroupHash, LdsSecurityObject, LdsVersionInfo, Sod};
use marty_icao::trust::{AnchorSource, TrustStore};
use marty_icao::{algo::DigestAlgorithm, oid};
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

fn subject(cn: &str) -> Subject {
    Subject {
        country: "UT".into(),
        mrz_country: "UTO".into(),
        organization: Some("Marty Test".into()),
        common_name: cn.into(),
    }
}

fn request(cn: &str, key_days: i64, days: i64) -> CertificateRequest {
    let start = now() - Duration::hours(1);
    CertificateRequest {
        subject: subject(cn),
        period: Period {
            not_before: start,
            not_after: start + Duration::days(days),
            key_usage_not_before: start,
            key_usage_not_after: start + Duration::days(key_days),
        },
        crl_distribution_point: "https://pkd.example.test/csca-de.crl".into(),
        serial: None,
    }
}

struct Pki {
    csca_key: KeyPair,
    csca: Certificate,
    dsc_key: KeyPair,
    dsc: Certificate,
}

fn pki(csca_spec: KeySpec, dsc_spec: KeySpec) -> Pki {
    let csca_key = KeyPair::generate(csca_spec).unwrap();
    let csca = issue::make_csca(&request("CSCA Marty", 5 * 365, 15 * 365), &csca_key).unwrap();
    let dsc_key = KeyPair::generate(dsc_spec).unwrap();
    let dsc = issue::make_dsc(
        &csca,
        &csca_key,
        &subject("CSCA Marty"),
        &request("DS Marty", 90, 3740),
        &dsc_key.spki,
        &["P"],
    )
    .unwrap();
    Pki {
        csca_key,
        csca,
        dsc_key,
        dsc,
    }
}

fn specs() -> Vec<KeySpec> {
    let mut v: Vec<KeySpec> = Curve::ALL
        .iter()
        .flat_map(|c| {
            [
                KeySpec::Ec {
                    curve: *c,
                    explicit: true,
                },
                KeySpec::Ec {
                    curve: *c,
                    explicit: false,
                },
            ]
        })
        .collect();
    v.push(KeySpec::Rsa { bits: 2048 });
    v.push(KeySpec::RsaPss { bits: 2048 });
    v
}

fn data_groups() -> Vec<(u8, Vec<u8>)> {
    let mrz = marty_icao::mrz::parse(
        "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<L898902C36UTO7408122F1204159ZE184226B<<<<<10",
    )
    .unwrap();
    vec![
        (1, marty_icao::lds::build_dg1(&mrz)),
        (2, vec![0x75, 0x02, 0x01, 0x02]),
        (14, vec![0x6E, 0x01, 0x00]),
    ]
}

fn sod_for(p: &Pki, digest: DigestAlgorithm, sid: SidChoice, v1: bool) -> Vec<u8> {
    let lds = LdsSecurityObject {
        version: i64::from(v1),
        hash_algorithm: digest,
        data_group_hashes: data_groups()
            .iter()
            .map(|(n, b)| DataGroupHash {
                number: *n,
                hash: digest.digest(b),
            })
            .collect(),
        lds_version_info: v1.then(|| LdsVersionInfo {
            lds_version: "0108".into(),
            unicode_version: "040000".into(),
        }),
    };
    issue::make_sod(&lds, &p.dsc, &p.dsc_key, sid, Some(now())).unwrap()
}

#[test]
fn every_key_type_issues_profiles_that_verify_and_pass_passive_authentication() {
    for spec in specs() {
        let p = pki(spec, spec);
        assert_eq!(p.csca.kind(), CertificateKind::Csca, "{spec}");
        assert_eq!(p.dsc.kind(), CertificateKind::DocumentSigner, "{spec}");
        if let KeySpec::Ec { explicit, .. } = spec {
            assert_eq!(
                marty_icao::algo::spki_has_explicit_ec_params(&p.csca.spki),
                explicit,
                "{spec}"
            );
        }
        let store = TrustStore::new(vec![p.csca.clone()], vec![]);
        for (digest, sid, v1) in [
            (DigestAlgorithm::Sha256, SidChoice::IssuerAndSerial, false),
            (
                DigestAlgorithm::Sha384,
                SidChoice::SubjectKeyIdentifier,
                true,
            ),
            (DigestAlgorithm::Sha512, SidChoice::IssuerAndSerial, true),
        ] {
            let sod = sod_for(&p, digest, sid, v1);
            assert_eq!(sod[0], 0x77);
            let parsed = Sod::parse(&sod).unwrap();
            assert_eq!(parsed.lds.version, i64::from(v1));
            let report = pa::passive_authentication(&sod, &data_groups(), &store, now(), false);
            assert_eq!(
                report.verdict,
                Verdict::Valid,
                "{spec} {digest:?}: {}",
                report.reason
            );
            assert!(
                report
                    .data_groups
                    .iter()
                    .all(|d| d.status == DataGroupStatus::Match)
            );
            // An 8th-edition DSC raises no profile warnings.
            assert!(
                !report.warnings.iter().any(|w| w.contains("profile")),
                "{:?}",
                report.warnings
            );
        }
    }
}

#[test]
fn profiles_carry_the_part12_extensions() {
    let p = pki(
        KeySpec::Ec {
            curve: Curve::BrainpoolP256r1,
            explicit: true,
        },
        KeySpec::Ec {
            curve: Curve::BrainpoolP256r1,
            explicit: true,
        },
    );
    let csca = &p.csca;
    assert_eq!(csca.version, 3);
    assert_eq!(csca.basic_constraints, Some((true, Some(0))));
    assert!(csca.extension(oid::BASIC_CONSTRAINTS).unwrap().critical);
    assert_eq!(
        csca.key_usage.as_deref(),
        Some(&[key_usage::KEY_CERT_SIGN, key_usage::CRL_SIGN][..])
    );
    assert!(csca.extension(oid::KEY_USAGE).unwrap().critical);
    assert!(csca.private_key_usage_period.is_some());
    assert_eq!(
        csca.extension(oid::SUBJECT_ALT_NAME).unwrap().value,
        csca.extension(oid::ISSUER_ALT_NAME).unwrap().value,
        "CSCA: SAN = IAN"
    );
    assert_eq!(
        csca.crl_distribution_points,
        vec!["https://pkd.example.test/csca-de.crl".to_owned()]
    );
    assert_eq!(csca.subject.country(), Some("UT"));
    assert_eq!(csca.alt_name_mrz_country.as_deref(), Some("UTO"));
    assert!(csca.serial[0] & 0x80 == 0 && csca.serial.len() <= 20);
    let dsc = &p.dsc;
    assert_eq!(
        dsc.key_usage.as_deref(),
        Some(&[key_usage::DIGITAL_SIGNATURE][..])
    );
    assert_eq!(dsc.document_types.as_deref(), Some(&["P".to_owned()][..]));
    assert!(dsc.basic_constraints.is_none());
    assert_eq!(dsc.authority_key_id, csca.subject_key_id);
    // SAN directoryName carries localityName = the MRZ code UTO.
    let san = &dsc.extension(oid::SUBJECT_ALT_NAME).unwrap().value;
    assert!(san.windows(5).any(|w| w == b"\x13\x03UTO"), "{san:02x?}");
    assert_eq!(dsc.alt_name_mrz_country.as_deref(), Some("UTO"));
    assert!(dsc.unknown_critical_extensions().is_empty());
}

#[test]
fn a_link_certificate_makes_the_new_key_trusted() {
    let old_key = KeyPair::generate(KeySpec::Ec {
        curve: Curve::P256,
        explicit: true,
    })
    .unwrap();
    let old = issue::make_csca(&request("CSCA Marty", 1825, 5475), &old_key).unwrap();
    let new_key = KeyPair::generate(KeySpec::Ec {
        curve: Curve::P384,
        explicit: true,
    })
    .unwrap();
    let new = issue::make_csca(&request("CSCA Marty 2", 1825, 5475), &new_key).unwrap();
    let period = request("x", 1825, 5475).period;
    let link = issue::make_link(
        &old,
        &old_key,
        &subject("CSCA Marty"),
        &new,
        &subject("CSCA Marty 2"),
        &period,
        "https://pkd.example.test/csca-de.crl",
        None,
    )
    .unwrap();
    assert_eq!(link.kind(), CertificateKind::Link);
    assert_eq!(link.authority_key_id, old.subject_key_id);
    assert_eq!(link.subject_key_id, new.subject_key_id);
    assert!(link.name_change, "renamed CSCA: nameChange present");
    // A DSC of the new key, trusted only through the old root and the link.
    let dsc_key = KeyPair::generate(KeySpec::Ec {
        curve: Curve::P256,
        explicit: true,
    })
    .unwrap();
    let dsc = issue::make_dsc(
        &new,
        &new_key,
        &subject("CSCA Marty 2"),
        &request("DS", 90, 3740),
        &dsc_key.spki,
        &["P"],
    )
    .unwrap();
    let store = TrustStore::new(vec![link.clone(), old.clone()], vec![]);
    assert!(matches!(
        store
            .anchors
            .iter()
            .find(|a| a.cert.raw == link.raw)
            .unwrap()
            .source,
        AnchorSource::Link { .. }
    ));
    assert_eq!(
        store.validate(&dsc, now()).outcome,
        marty_icao::trust::PathOutcome::Valid
    );
    // Without the old root the link proves nothing.
    let store = TrustStore::new(vec![link], vec![]);
    assert_eq!(
        store.validate(&dsc, now()).outcome,
        marty_icao::trust::PathOutcome::AnchorNotFound
    );
}

#[test]
fn crls_round_trip_and_drive_revocation() {
    let p = pki(
        KeySpec::Rsa { bits: 2048 },
        KeySpec::Ec {
            curve: Curve::P256,
            explicit: false,
        },
    );
    let sign = p.csca_key.signature_algorithm();
    let empty = crl::build(
        &p.csca,
        &p.csca_key.private,
        &sign,
        now(),
        now() + Duration::days(90),
        1,
        &[],
    )
    .unwrap();
    let parsed = Crl::from_der(&empty).unwrap();
    parsed.verify_signature(&p.csca).unwrap();
    assert_eq!(
        (parsed.version, parsed.crl_number.as_deref()),
        (2, Some(&[1u8][..]))
    );
    assert_eq!(parsed.authority_key_id, p.csca.subject_key_id);
    assert!(parsed.revoked.is_empty());
    let sod = sod_for(
        &p,
        DigestAlgorithm::Sha256,
        SidChoice::IssuerAndSerial,
        false,
    );
    let report = pa::passive_authentication(
        &sod,
        &data_groups(),
        &TrustStore::new(vec![p.csca.clone()], vec![parsed]),
        now(),
        true,
    );
    assert_eq!(report.verdict, Verdict::Valid, "{}", report.reason);

    let listed = crl::build(
        &p.csca,
        &p.csca_key.private,
        &sign,
        now(),
        now() + Duration::days(90),
        2,
        &[(p.dsc.serial.clone(), now())],
    )
    .unwrap();
    let store = TrustStore::new(vec![p.csca.clone()], vec![Crl::from_der(&listed).unwrap()]);
    let report = pa::passive_authentication(&sod, &[], &store, now(), false);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert!(
        report.reason.contains("the DSC is listed on the CRL"),
        "{}",
        report.reason
    );

    let stale = crl::build(
        &p.csca,
        &p.csca_key.private,
        &sign,
        now() - Duration::days(100),
        now() - Duration::days(10),
        3,
        &[],
    )
    .unwrap();
    let store = TrustStore::new(vec![p.csca.clone()], vec![Crl::from_der(&stale).unwrap()]);
    let report = pa::passive_authentication(&sod, &[], &store, now(), false);
    assert_eq!(report.verdict, Verdict::Indeterminate);
    assert!(report.reason.contains("stale"), "{}", report.reason);
    // Strict revocation without any CRL: INDETERMINATE.
    let report = pa::passive_authentication(
        &sod,
        &[],
        &TrustStore::new(vec![p.csca.clone()], vec![]),
        now(),
        true,
    );
    assert_eq!(report.verdict, Verdict::Indeterminate);
}

#[test]
fn master_lists_round_trip() {
    let p = pki(
        KeySpec::Ec {
            curve: Curve::BrainpoolP384r1,
            explicit: true,
        },
        KeySpec::Ec {
            curve: Curve::P256,
            explicit: true,
        },
    );
    let mls_key = KeyPair::generate(KeySpec::Ec {
        curve: Curve::P256,
        explicit: false,
    })
    .unwrap();
    let mls = issue::make_ml_signer(
        &p.csca,
        &p.csca_key,
        &subject("CSCA Marty"),
        &request("ML Signer", 365, 1825),
        &mls_key.spki,
    )
    .unwrap();
    assert_eq!(mls.kind(), CertificateKind::MasterListSigner);
    let other = pki(KeySpec::Rsa { bits: 2048 }, KeySpec::Rsa { bits: 2048 });
    let listed = vec![p.csca.clone(), other.csca.clone(), p.csca.clone()];
    let der = masterlist::build(
        &listed,
        &mls,
        &p.csca,
        &mls_key.private,
        DigestAlgorithm::Sha256,
        mls_key.signature_algorithm(),
        now(),
    )
    .unwrap();
    let ml = MasterList::parse(&der).unwrap();
    assert_eq!(
        ml.certificates.len(),
        2,
        "identical entries are listed once"
    );
    assert_eq!(ml.distinct_keys(), 2);
    let v = ml.verify(&TrustStore::new(vec![p.csca.clone()], vec![]), now());
    assert!(v.valid, "{v:?}");
    assert!(v.signing_time.is_some());
    // Marty builds no master list signed by a DSC, nor one listing a DSC.
    let err = masterlist::build(
        &listed,
        &p.dsc,
        &p.csca,
        &p.dsc_key.private,
        DigestAlgorithm::Sha256,
        p.dsc_key.signature_algorithm(),
        now(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("is not a Master List Signer"),
        "{err}"
    );
    let err = masterlist::build(
        std::slice::from_ref(&p.dsc),
        &mls,
        &p.csca,
        &mls_key.private,
        DigestAlgorithm::Sha256,
        mls_key.signature_algorithm(),
        now(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("is not a CSCA or link certificate"),
        "{err}"
    );
    // One signed by a DSC elsewhere fails verification on the signer's EKU.
    let content = marty_icao::der::sequence(&[
        &marty_icao::der::integer(0),
        &marty_icao::der::set_of(vec![p.csca.raw.clone()]),
    ]);
    let bad = marty_icao::cms::sign(&marty_icao::cms::SignRequest {
        content_type: oid::CSCA_MASTER_LIST,
        content: &content,
        signer: &p.dsc,
        extra_certificates: &[&p.csca],
        key: &p.dsc_key.private,
        digest: DigestAlgorithm::Sha256,
        signature_algorithm: p.dsc_key.signature_algorithm(),
        sid: SidChoice::SubjectKeyIdentifier,
        signing_time: Some(now()),
        detached: false,
    })
    .unwrap();
    let v = MasterList::parse(&bad)
        .unwrap()
        .verify(&TrustStore::new(vec![p.csca.clone()], vec![]), now());
    assert!(!v.valid && !v.signer_has_eku);
}

#[test]
fn refusals() {
    let p = pki(
        KeySpec::Ec {
            curve: Curve::P256,
            explicit: false,
        },
        KeySpec::Ec {
            curve: Curve::P256,
            explicit: false,
        },
    );
    let lds = LdsSecurityObject {
        version: 0,
        hash_algorithm: DigestAlgorithm::Sha1,
        data_group_hashes: vec![],
        lds_version_info: None,
    };
    let err =
        issue::make_sod(&lds, &p.dsc, &p.dsc_key, SidChoice::IssuerAndSerial, None).unwrap_err();
    assert!(err.to_string().contains("never issues SHA-1"));
    let lds = LdsSecurityObject {
        hash_algorithm: DigestAlgorithm::Sha256,
        ..lds
    };
    let err =
        issue::make_sod(&lds, &p.dsc, &p.csca_key, SidChoice::IssuerAndSerial, None).unwrap_err();
    assert!(err.to_string().contains("does not belong to the DSC"));
    let mut bad = request("x", 90, 3740);
    bad.subject.country = "de".into();
    let key = KeyPair::generate(KeySpec::Ec {
        curve: Curve::P256,
        explicit: false,
    })
    .unwrap();
    assert!(
        issue::make_csca(&bad, &key)
            .unwrap_err()
            .to_string()
            .contains("two upper-case letters")
    );
    assert!(key.to_encrypted_pem(b"").is_err());
    let pem = key.to_encrypted_pem(b"correct horse").unwrap();
    assert!(String::from_utf8_lossy(&pem).contains("ENCRYPTED PRIVATE KEY"));
    assert!(KeyPair::from_encrypted_pem(&pem, b"wrong", None).is_err());
}
