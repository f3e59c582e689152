//! The verdict policy of Passive Authentication (DESIGN §7, Doc 9303 Part 11 §5.1.1):
//! which country may vouch for which document, who may sign a SOD, what "valid" means when
//! something was not checked, and RFC 5280's rule on a certificate's two algorithm fields.

#![allow(clippy::unwrap_used)]

use marty_icao::algo::{self, DigestAlgorithm};
use marty_icao::cert::Certificate;
use marty_icao::cms::{self, SidChoice};
use marty_icao::der;
use marty_icao::issue::{self, CertificateRequest, KeyPair, KeySpec, Period, SodSigner, Subject};
use marty_icao::pa::{self, CheckStatus, PaReport, Verdict};
use marty_icao::sod::{self, DataGroupHash, LdsSecurityObject};
use marty_icao::trust::TrustStore;
use marty_icao::{mrz, oid};
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

fn request(
    country: &str,
    mrz_country: &str,
    cn: &str,
    key_days: i64,
    days: i64,
) -> CertificateRequest {
    let start = now() - Duration::hours(1);
    CertificateRequest {
        subject: Subject {
            country: country.into(),
            mrz_country: mrz_country.into(),
            organization: None,
            common_name: cn.into(),
        },
        period: Period {
            not_before: start,
            not_after: start + Duration::days(days),
            key_usage_not_before: start,
            key_usage_not_after: start + Duration::days(key_days),
        },
        crl_distribution_point: "https://pkd.example.test/csca.crl".into(),
        serial: None,
    }
}

const P256: KeySpec = KeySpec::Ec {
    curve: issue::Curve::P256,
    explicit: false,
};

/// A CSCA of `country` and a DSC it issued.
struct Pki {
    csca_key: KeyPair,
    csca: Certificate,
    dsc_key: KeyPair,
    dsc: Certificate,
}

fn pki(country: &str, mrz_country: &str) -> Pki {
    let csca_key = KeyPair::generate(P256).unwrap();
    let csca_req = request(country, mrz_country, "CSCA", 5 * 365, 15 * 365);
    let csca = issue::make_csca(&csca_req, &csca_key).unwrap();
    let dsc_key = KeyPair::generate(P256).unwrap();
    let dsc = issue::make_dsc(
        &csca,
        &csca_key,
        &csca_req.subject,
        &request(country, mrz_country, "DS", 90, 3740),
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

/// DG1 (a TD3 MRZ issued by `state`), DG2 and DG14.
fn data_groups(state: &str) -> Vec<(u8, Vec<u8>)> {
    let m = mrz::MrzBuilder {
        format: mrz::MrzFormat::Td3,
        document_code: "P".into(),
        issuing_state: state.into(),
        document_number: "L898902C3".into(),
        primary_identifier: "ERIKSSON".into(),
        secondary_identifier: "ANNA MARIA".into(),
        nationality: state.into(),
        date_of_birth: "740812".into(),
        sex: mrz::Sex::Female,
        date_of_expiry: "320415".into(),
        optional_data: String::new(),
        umlauts: mrz::UmlautStyle::default(),
    };
    let mrz = m.build().unwrap();
    vec![
        (1, marty_icao::lds::build_dg1(&mrz)),
        (2, vec![0x75, 0x02, 0x01, 0x02]),
        (14, vec![0x6E, 0x01, 0x00]),
    ]
}

fn lds_for(dgs: &[(u8, Vec<u8>)]) -> LdsSecurityObject {
    LdsSecurityObject {
        version: 0,
        hash_algorithm: DigestAlgorithm::Sha256,
        data_group_hashes: dgs
            .iter()
            .map(|(n, b)| DataGroupHash {
                number: *n,
                hash: DigestAlgorithm::Sha256.digest(b),
            })
            .collect(),
        lds_version_info: None,
    }
}

fn sod_signed_by(dgs: &[(u8, Vec<u8>)], signer: &Certificate, key: &KeyPair) -> Vec<u8> {
    // Through the CMS layer directly: SodSigner refuses a signer that is not a DSC.
    let content = lds_for(dgs).to_der();
    let ci = cms::sign(&cms::SignRequest {
        content_type: oid::LDS_SECURITY_OBJECT,
        content: &content,
        signer,
        extra_certificates: &[],
        key: &key.private,
        digest: DigestAlgorithm::Sha256,
        signature_algorithm: key.signature_algorithm(),
        sid: SidChoice::IssuerAndSerial,
        signing_time: None,
        detached: false,
    })
    .unwrap();
    sod::wrap(&ci)
}

fn check<'a>(report: &'a PaReport, name: &str) -> &'a pa::Check {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:#?}"))
}

#[test]
fn the_issuing_state_must_be_the_cscas_country() {
    let ut = pki("UT", "UTO");
    let store = TrustStore::new(vec![ut.csca.clone()], vec![]);
    // A Utopian CSCA and DSC signing a German DG1: every signature holds, yet it is not a
    // document Utopia may vouch for.
    let dgs = data_groups("D");
    let report = pa::passive_authentication(
        &sod_signed_by(&dgs, &ut.dsc, &ut.dsc_key),
        &dgs,
        &store,
        now(),
        false,
    );
    assert_eq!(report.verdict, Verdict::Invalid, "{}", report.reason);
    let c = check(&report, "issuing_state");
    assert_eq!(c.status, CheckStatus::Failed);
    assert!(
        c.detail.contains("issuing State D (DE)") && c.detail.contains("UT"),
        "{}",
        c.detail
    );

    // The same document of Utopia passes that check.
    let dgs = data_groups("UTO");
    let report = pa::passive_authentication(
        &sod_signed_by(&dgs, &ut.dsc, &ut.dsc_key),
        &dgs,
        &store,
        now(),
        false,
    );
    assert_eq!(check(&report, "issuing_state").status, CheckStatus::Passed);
    assert_eq!(report.verdict, Verdict::Valid, "{}", report.reason);
}

#[test]
fn with_many_anchors_a_csca_vouches_only_for_its_own_country() {
    // As with a master list: several countries' CSCAs in one store.
    let ut = pki("UT", "UTO");
    let de = pki("DE", "D");
    let store = TrustStore::new(vec![ut.csca.clone(), de.csca.clone()], vec![]);
    let german = data_groups("D");
    let forged = pa::passive_authentication(
        &sod_signed_by(&german, &ut.dsc, &ut.dsc_key),
        &german,
        &store,
        now(),
        false,
    );
    assert_eq!(forged.verdict, Verdict::Invalid, "{}", forged.reason);
    let genuine = pa::passive_authentication(
        &sod_signed_by(&german, &de.dsc, &de.dsc_key),
        &german,
        &store,
        now(),
        false,
    );
    assert_eq!(check(&genuine, "issuing_state").status, CheckStatus::Passed);
    assert_eq!(genuine.verdict, Verdict::Valid, "{}", genuine.reason);
}

#[test]
fn an_issuing_state_without_a_country_is_a_warning() {
    // XXA (stateless persons) names no State: the correspondence cannot be decided.
    let ut = pki("UT", "UTO");
    let store = TrustStore::new(vec![ut.csca.clone()], vec![]);
    let dgs = data_groups("XXA");
    let report = pa::passive_authentication(
        &sod_signed_by(&dgs, &ut.dsc, &ut.dsc_key),
        &dgs,
        &store,
        now(),
        false,
    );
    assert_eq!(check(&report, "issuing_state").status, CheckStatus::Warning);
    assert_eq!(report.verdict, Verdict::Valid);
    assert!(report.reason.starts_with("valid with"), "{}", report.reason);
}

#[test]
fn only_a_document_signer_may_sign_a_sod() {
    let ut = pki("UT", "UTO");
    let store = TrustStore::new(vec![ut.csca.clone()], vec![]);
    let dgs = data_groups("UTO");

    // The CSCA's own key.
    let by_csca = pa::passive_authentication(
        &sod_signed_by(&dgs, &ut.csca, &ut.csca_key),
        &dgs,
        &store,
        now(),
        false,
    );
    assert_eq!(by_csca.verdict, Verdict::Invalid, "{}", by_csca.reason);
    let c = check(&by_csca, "signer_purpose");
    assert_eq!(c.status, CheckStatus::Failed);
    assert!(c.detail.contains("CA certificate"), "{}", c.detail);

    // A Master List Signer that chains to the CSCA.
    let mls_key = KeyPair::generate(P256).unwrap();
    let csca_subject = request("UT", "UTO", "CSCA", 1, 2).subject;
    let mls = issue::make_ml_signer(
        &ut.csca,
        &ut.csca_key,
        &csca_subject,
        &request("UT", "UTO", "MLS", 365, 730),
        &mls_key.spki,
    )
    .unwrap();
    let by_mls = pa::passive_authentication(
        &sod_signed_by(&dgs, &mls, &mls_key),
        &dgs,
        &store,
        now(),
        false,
    );
    assert_eq!(by_mls.verdict, Verdict::Invalid, "{}", by_mls.reason);
    assert!(
        check(&by_mls, "signer_purpose")
            .detail
            .contains("Master List Signer"),
        "{by_mls:#?}"
    );

    // Marty refuses to make such a SOD in the first place.
    let err = SodSigner::new(ut.csca.clone(), ut.csca_key.clone()).unwrap_err();
    assert!(err.to_string().contains("not a Document Signer"), "{err}");
    let err = SodSigner::new(mls.clone(), mls_key.clone()).unwrap_err();
    assert!(err.to_string().contains("Master List Signer"), "{err}");
    assert!(SodSigner::new(ut.dsc.clone(), ut.dsc_key.clone()).is_ok());
}

#[test]
fn no_data_group_is_indeterminate_and_the_sod_alone_is_sod_verify() {
    let ut = pki("UT", "UTO");
    let store = TrustStore::new(vec![ut.csca.clone()], vec![]);
    let dgs = data_groups("UTO");
    let sod = sod_signed_by(&dgs, &ut.dsc, &ut.dsc_key);
    let report = pa::passive_authentication(&sod, &[], &store, now(), false);
    assert_eq!(report.verdict, Verdict::Indeterminate, "{}", report.reason);
    assert!(
        report.reason.contains("no data group checked"),
        "{}",
        report.reason
    );

    let sod_only = pa::verify_sod(&sod, &store, now(), false);
    assert_eq!(sod_only.verdict, Verdict::Valid, "{}", sod_only.reason);
    assert!(
        sod_only
            .checks
            .iter()
            .all(|c| c.name != "data_group_hashes")
    );

    // DG2 and DG14 without DG1: valid, but the holder's data was not verified, and said so.
    let report = pa::passive_authentication(&sod, &dgs[1..], &store, now(), false);
    assert_eq!(report.verdict, Verdict::Valid);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("the holder's data (the MRZ) was not verified")),
        "{:?}",
        report.warnings
    );
    assert_ne!(report.reason, "every check passed");
}

#[test]
fn every_check_passed_only_when_nothing_warned_or_was_skipped() {
    let ut = pki("UT", "UTO");
    let dgs = data_groups("UTO");
    let sod = sod_signed_by(&dgs, &ut.dsc, &ut.dsc_key);
    // Without a CRL, revocation is a warning: valid, but not "every check passed".
    let store = TrustStore::new(vec![ut.csca.clone()], vec![]);
    let report = pa::passive_authentication(&sod, &dgs, &store, now(), false);
    assert_eq!(report.verdict, Verdict::Valid);
    assert_eq!(report.reason, "valid with 1 warning", "{report:#?}");
    assert_eq!(report.warning_count(), 1);

    // With a current CRL of the CSCA nothing is left unchecked.
    let crl = marty_icao::crl::build(
        &ut.csca,
        &ut.csca_key.private,
        &ut.csca_key.signature_algorithm(),
        now() - Duration::hours(1),
        now() + Duration::days(30),
        1,
        &[],
    )
    .unwrap();
    let store = TrustStore::new(
        vec![ut.csca.clone()],
        vec![marty_icao::crl::Crl::from_der(&crl).unwrap()],
    );
    let report = pa::passive_authentication(&sod, &dgs, &store, now(), false);
    assert_eq!(report.reason, "every check passed", "{report:#?}");
    assert_eq!(report.warning_count(), 0);
}

#[test]
fn a_certificate_whose_two_signature_algorithms_differ_is_not_trusted() {
    // RFC 5280 §4.1.1.2: signatureAlgorithm must equal tbsCertificate.signature. Re-sign the
    // DSC's tbs after changing its inner field to ecdsa-with-SHA384 while the outer field and
    // the signature stay ecdsa-with-SHA256: the signature verifies, the certificate lies.
    let ut = pki("UT", "UTO");
    let sha256 = Oid(oid::ECDSA_WITH_SHA256);
    let sha384 = Oid(oid::ECDSA_WITH_SHA384);
    let tbs = replace_once(&ut.dsc.tbs, &sha256.der(), &sha384.der());
    let alg = ut.csca_key.signature_algorithm();
    let signature = algo::sign(&ut.csca_key.private, &alg, &tbs).unwrap();
    let raw = der::sequence(&[&tbs, &alg.to_der(), &der::bit_string(0, &signature)]);
    let forged = Certificate::from_der(&raw).unwrap();
    assert!(forged.check_signature_algorithms().is_err());
    assert!(forged.verify_signature_with(&ut.csca.spki).is_err());

    let store = TrustStore::new(vec![ut.csca.clone()], vec![]);
    let path = store.validate(&forged, now());
    assert_eq!(
        path.outcome,
        marty_icao::trust::PathOutcome::SignatureInvalid,
        "{}",
        path.reason
    );
    assert!(path.reason.contains("RFC 5280"), "{}", path.reason);

    // A CSCA certificate with the same defect is not an anchor.
    let csca_tbs = replace_once(&ut.csca.tbs, &sha256.der(), &sha384.der());
    let signature = algo::sign(&ut.csca_key.private, &alg, &csca_tbs).unwrap();
    let raw = der::sequence(&[&csca_tbs, &alg.to_der(), &der::bit_string(0, &signature)]);
    let store = TrustStore::new(vec![Certificate::from_der(&raw).unwrap()], vec![]);
    assert!(store.anchors.is_empty());
    assert!(
        store.rejected[0].1.contains("RFC 5280"),
        "{:?}",
        store.rejected
    );
}

struct Oid(&'static str);

impl Oid {
    fn der(&self) -> Vec<u8> {
        der::Oid::known(self.0).to_der()
    }
}

fn replace_once(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    assert_eq!(needle.len(), with.len());
    let at = haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut out = haystack.to_vec();
    out[at..at + needle.len()].copy_from_slice(with);
    out
}
