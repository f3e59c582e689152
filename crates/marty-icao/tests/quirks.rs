//! Real-world quirks the vectors do not carry: built here, then verified.
//! (The SignerInfo is assembled by hand so that its fields can deviate from what Marty writes.)

#![allow(clippy::unwrap_used)]

use marty_icao::algo::{self, DigestAlgorithm, SignatureAlgorithm};
use marty_icao::cert::Certificate;
use marty_icao::cms::SignerMatch;
use marty_icao::der::{self, Oid, Tag};
use marty_icao::issue::{self, CertificateRequest, Curve, KeyPair, KeySpec, Period, Subject};
use marty_icao::name::Name;
use marty_icao::oid;
use marty_icao::pa::{self, Verdict};
use marty_icao::sod::{DataGroupHash, LdsSecurityObject, Sod, wrap};
use marty_icao::trust::{PathOutcome, TrustStore};
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

fn subject(cn: &str) -> Subject {
    Subject {
        country: "NZ".into(),
        mrz_country: "NZL".into(),
        organization: Some("Government".into()),
        common_name: cn.into(),
    }
}

fn request(cn: &str) -> CertificateRequest {
    let start = now() - Duration::hours(1);
    CertificateRequest {
        subject: subject(cn),
        period: Period {
            not_before: start,
            not_after: start + Duration::days(3650),
            key_usage_not_before: start,
            key_usage_not_after: start + Duration::days(90),
        },
        crl_distribution_point: "https://pkd.example.test/nz.crl".into(),
        serial: None,
    }
}

struct Signer {
    csca: Certificate,
    dsc: Certificate,
    key: KeyPair,
}

fn signer() -> Signer {
    let csca_key = KeyPair::generate(KeySpec::Rsa { bits: 2048 }).unwrap();
    let csca = issue::make_csca(&request("CSCA NZ"), &csca_key).unwrap();
    let key = KeyPair::generate(KeySpec::Rsa { bits: 2048 }).unwrap();
    let dsc = issue::make_dsc(
        &csca,
        &csca_key,
        &subject("CSCA NZ"),
        &request("DS NZ"),
        &key.spki,
        &["P"],
    )
    .unwrap();
    Signer { csca, dsc, key }
}

/// How the hand-made SignerInfo deviates.
struct Quirks {
    content_type: &'static str,
    /// The issuer name written in the SignerIdentifier.
    sid_issuer: Option<Name>,
    /// Write NULL parameters in the digest AlgorithmIdentifiers.
    digest_null: bool,
    /// Name the signature algorithm with the rsaEncryption OID.
    rsa_encryption_oid: bool,
    /// Extra certificates embedded beside the DSC.
    extra_certs: Vec<Vec<u8>>,
    /// Name the signature algorithm with an OID nobody knows.
    unknown_signature_oid: bool,
}

fn build(s: &Signer, lds: &LdsSecurityObject, q: &Quirks) -> Vec<u8> {
    let digest = lds.hash_algorithm;
    let content = lds.to_der();
    let attr = |o: &'static str, value: Vec<u8>| {
        der::sequence(&[&Oid::known(o).to_der(), &der::set_of(vec![value])])
    };
    let signed = der::set_of(vec![
        attr(oid::CONTENT_TYPE, Oid::known(q.content_type).to_der()),
        attr(
            oid::MESSAGE_DIGEST,
            der::octet_string(&digest.digest(&content)),
        ),
    ]);
    let signature = algo::sign(
        &s.key.private,
        &SignatureAlgorithm::RsaPkcs1 { digest },
        &signed,
    )
    .unwrap();
    let mut implicit = signed.clone();
    implicit[0] = 0xA0;
    let digest_id = if q.digest_null {
        der::sequence(&[&Oid::known(digest.oid()).to_der(), &der::null()])
    } else {
        digest.to_der()
    };
    let sig_alg = if q.unknown_signature_oid {
        der::sequence(&[&Oid::known("1.2.3.4.5.6.7").to_der()])
    } else if q.rsa_encryption_oid {
        SignatureAlgorithm::RsaPkcs1Unspecified.to_der()
    } else {
        SignatureAlgorithm::RsaPkcs1 { digest }.to_der()
    };
    let issuer = q.sid_issuer.clone().unwrap_or_else(|| s.dsc.issuer.clone());
    let sid = der::sequence(&[&issuer.raw, &der::tlv(Tag::INTEGER, &s.dsc.serial)]);
    let signer_info = der::sequence(&[
        &der::integer(1),
        &sid,
        &digest_id,
        &implicit,
        &sig_alg,
        &der::octet_string(&signature),
    ]);
    let mut certs = s.dsc.raw.clone();
    for c in &q.extra_certs {
        certs.extend_from_slice(c);
    }
    let encap = der::sequence(&[
        &Oid::known(q.content_type).to_der(),
        &der::explicit(0, &der::octet_string(&content)),
    ]);
    let sd = der::sequence(&[
        &der::integer(3),
        &der::set_of(vec![digest_id.clone()]),
        &encap,
        &der::tlv(Tag::context(0), &certs),
        &der::set_of(vec![signer_info]),
    ]);
    wrap(&der::sequence(&[
        &Oid::known(oid::SIGNED_DATA).to_der(),
        &der::explicit(0, &sd),
    ]))
}

fn lds() -> LdsSecurityObject {
    LdsSecurityObject {
        version: 0,
        hash_algorithm: DigestAlgorithm::Sha256,
        // Deliberately unsorted, as some issuers list them.
        data_group_hashes: [14u8, 1, 2]
            .iter()
            .map(|n| DataGroupHash {
                number: *n,
                hash: DigestAlgorithm::Sha256.digest(&[*n]),
            })
            .collect(),
        lds_version_info: None,
    }
}

fn plain() -> Quirks {
    Quirks {
        content_type: oid::LDS_SECURITY_OBJECT,
        sid_issuer: None,
        digest_null: false,
        rsa_encryption_oid: false,
        extra_certs: vec![],
        unknown_signature_oid: false,
    }
}

fn verify(s: &Signer, sod: &[u8]) -> pa::PaReport {
    let dgs: Vec<(u8, Vec<u8>)> = [2u8, 14].iter().map(|n| (*n, vec![*n])).collect();
    pa::passive_authentication(
        sod,
        &dgs,
        &TrustStore::new(vec![s.csca.clone()], vec![]),
        now(),
        false,
    )
}

#[test]
fn issuer_name_in_another_rdn_order_and_string_type_is_matched_after_normalising() {
    let s = signer();
    // The DSC's issuer is C=NZ, O=Government, CN=CSCA NZ (PrintableString); write it reversed,
    // in upper case.
    let reordered = Name::build(&[
        (oid::COMMON_NAME, "csca nz"),
        (oid::ORGANIZATION, "GOVERNMENT"),
        (oid::COUNTRY, "NZ"),
    ]);
    assert!(reordered.raw != s.dsc.issuer.raw);
    let sod = build(
        &s,
        &lds(),
        &Quirks {
            sid_issuer: Some(reordered),
            ..plain()
        },
    );
    let report = verify(&s, &sod);
    assert_eq!(report.verdict, Verdict::Valid, "{}", report.reason);
    assert_eq!(
        report.sod.as_ref().unwrap().signer_found_by,
        Some(SignerMatch::NormalisedIssuer)
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("only after normalising")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn an_unmatchable_signer_identifier_falls_back_to_the_sole_certificate() {
    let s = signer();
    let other = Name::build(&[(oid::COUNTRY, "NZ"), (oid::COMMON_NAME, "Somebody else")]);
    let sod = build(
        &s,
        &lds(),
        &Quirks {
            sid_issuer: Some(other.clone()),
            ..plain()
        },
    );
    let report = verify(&s, &sod);
    assert_eq!(report.verdict, Verdict::Valid, "{}", report.reason);
    assert_eq!(
        report.sod.as_ref().unwrap().signer_found_by,
        Some(SignerMatch::SoleCertificate)
    );
    // With two embedded certificates there is nothing to fall back to.
    let sod = build(
        &s,
        &lds(),
        &Quirks {
            sid_issuer: Some(other),
            extra_certs: vec![s.csca.raw.clone()],
            ..plain()
        },
    );
    let report = verify(&s, &sod);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert!(
        report
            .reason
            .contains("does not contain the Document Signer certificate"),
        "{}",
        report.reason
    );
}

#[test]
fn legacy_content_type_is_accepted_with_a_warning() {
    let s = signer();
    let sod = build(
        &s,
        &lds(),
        &Quirks {
            content_type: oid::LDS_SECURITY_OBJECT_LEGACY,
            ..plain()
        },
    );
    let parsed = Sod::parse(&sod).unwrap();
    assert_eq!(parsed.warnings.len(), 1);
    let report = verify(&s, &sod);
    assert_eq!(report.verdict, Verdict::Valid, "{}", report.reason);
    assert!(report.warnings.iter().any(|w| w.contains("1.3.27.1.1.1")));
    // Any other content type is refused.
    let sod = build(
        &s,
        &lds(),
        &Quirks {
            content_type: oid::CSCA_MASTER_LIST,
            ..plain()
        },
    );
    assert!(
        Sod::parse(&sod)
            .unwrap_err()
            .to_string()
            .contains("not an LDS security object")
    );
}

#[test]
fn null_digest_parameters_and_rsa_encryption_oid_verify() {
    let s = signer();
    let sod = build(
        &s,
        &lds(),
        &Quirks {
            digest_null: true,
            rsa_encryption_oid: true,
            ..plain()
        },
    );
    let report = verify(&s, &sod);
    assert_eq!(report.verdict, Verdict::Valid, "{}", report.reason);
    assert_eq!(
        report.sod.unwrap().signature_algorithm.unwrap(),
        "RSA PKCS#1 v1.5 (rsaEncryption OID as signature algorithm)"
    );
}

#[test]
fn several_cscas_with_the_same_name_are_told_apart_by_key_identifier() {
    let first_key = KeyPair::generate(KeySpec::Ec {
        curve: Curve::BrainpoolP256r1,
        explicit: true,
    })
    .unwrap();
    let first = issue::make_csca(&request("CSCA NZ"), &first_key).unwrap();
    let second_key = KeyPair::generate(KeySpec::Ec {
        curve: Curve::BrainpoolP256r1,
        explicit: true,
    })
    .unwrap();
    let second = issue::make_csca(&request("CSCA NZ"), &second_key).unwrap();
    assert_eq!(first.subject.raw, second.subject.raw);
    let dsc_key = KeyPair::generate(KeySpec::Ec {
        curve: Curve::P256,
        explicit: true,
    })
    .unwrap();
    let dsc = issue::make_dsc(
        &second,
        &second_key,
        &subject("CSCA NZ"),
        &request("DS NZ"),
        &dsc_key.spki,
        &["P"],
    )
    .unwrap();
    let store = TrustStore::new(vec![first.clone(), second.clone()], vec![]);
    let path = store.validate(&dsc, now());
    assert_eq!(path.outcome, PathOutcome::Valid, "{}", path.reason);
    assert_eq!(
        path.anchor.unwrap().subject_key_id,
        second
            .subject_key_id
            .as_deref()
            .map(marty_icao::hex::encode)
    );
    // Only the other key of that name: the AKI finds nothing, and the name alone is not trusted.
    let store = TrustStore::new(vec![first], vec![]);
    assert_eq!(
        store.validate(&dsc, now()).outcome,
        PathOutcome::AnchorNotFound
    );
}

#[test]
fn a_signature_algorithm_marty_cannot_check_is_indeterminate_not_invalid() {
    let s = signer();
    let sod = build(
        &s,
        &lds(),
        &Quirks {
            unknown_signature_oid: true,
            ..plain()
        },
    );
    let report = verify(&s, &sod);
    assert_eq!(report.verdict, Verdict::Indeterminate, "{}", report.reason);
    assert!(
        report
            .reason
            .contains("unsupported algorithm 1.2.3.4.5.6.7"),
        "{}",
        report.reason
    );
}

#[test]
fn a_dg1_the_sod_does_not_cover_fails() {
    let s = signer();
    // The SOD hashes DG2 and DG14 only; DG1 is given anyway.
    let mut no_dg1 = lds();
    no_dg1.data_group_hashes.retain(|h| h.number != 1);
    let sod = build(&s, &no_dg1, &plain());
    let mrz = marty_icao::mrz::parse(
        "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<L898902C36UTO7408122F1204159ZE184226B<<<<<10",
    )
    .unwrap();
    let dgs = vec![
        (1u8, marty_icao::lds::build_dg1(&mrz)),
        (2, vec![2]),
        (14, vec![14]),
    ];
    let report = pa::passive_authentication(
        &sod,
        &dgs,
        &TrustStore::new(vec![s.csca.clone()], vec![]),
        now(),
        false,
    );
    assert_eq!(report.verdict, Verdict::Invalid, "{}", report.reason);
    assert!(
        report
            .reason
            .contains("DG1 given but not covered by the SOD"),
        "{}",
        report.reason
    );
}
