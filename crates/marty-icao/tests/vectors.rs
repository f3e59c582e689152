//! Every real artefact in `shared/vectors/` gets the verdict its MANIFEST states.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use marty_icao::cert::{Certificate, CertificateKind};
use marty_icao::cms::CmsError;
use marty_icao::crl::Crl;
use marty_icao::masterlist::MasterList;
use marty_icao::pa::{self, CheckStatus, DataGroupStatus, Verdict};
use marty_icao::sod::{Sod, SodError};
use marty_icao::trust::TrustStore;
use time::OffsetDateTime;
use time::macros::datetime;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(vectors().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn certs_in(dir: &str) -> Vec<Certificate> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(vectors().join(dir)).unwrap() {
        let path = entry.unwrap().path();
        out.push(
            Certificate::from_der(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        );
    }
    out
}

/// A time at which every real DSC and CSCA certificate here is valid, including Indonesia's
/// 2020 link certificate (until 2026-04-29).
const AT: OffsetDateTime = datetime!(2026-01-15 00:00 UTC);

const COUNTRIES: [&str; 8] = ["AT", "DE", "FR", "ID", "NZ", "RU", "SG", "US"];

/// The data groups of `dg/` that belong to a country's SOD.
fn data_groups(country: &str) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(vectors().join("dg")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("EF_DG")
            && rest.ends_with(&format!("_{country}.bin"))
        {
            let n: u8 = rest.split('_').next().unwrap().parse().unwrap();
            out.push((n, std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// Passive Authentication with the country's real data groups; a country whose data groups
/// are not published (RU, US, …) gets the EF.SOD-only check: with no data group at all, PA
/// is INDETERMINATE by design.
fn verify(sod: &[u8], dgs: &[(u8, Vec<u8>)], store: &TrustStore) -> pa::PaReport {
    if dgs.is_empty() {
        pa::verify_sod(sod, store, AT, false)
    } else {
        pa::passive_authentication(sod, dgs, store, AT, false)
    }
}

fn assert_valid(report: &pa::PaReport, label: &str) {
    assert_eq!(
        report.verdict,
        Verdict::Valid,
        "{label}: {}\n{report:#?}",
        report.reason
    );
    let sig = report
        .checks
        .iter()
        .find(|c| c.name == "sod_signature")
        .unwrap();
    assert_eq!(sig.status, CheckStatus::Passed, "{label}");
    let path = report
        .checks
        .iter()
        .find(|c| c.name == "certificate_path")
        .unwrap();
    assert_eq!(path.status, CheckStatus::Passed, "{label}");
}

#[test]
fn every_sod_is_valid_against_the_csca_directory() {
    let store = TrustStore::new(certs_in("csca"), vec![]);
    // Link certificates whose older signing key is not in the directory add nothing.
    assert!(
        store
            .rejected
            .iter()
            .all(|(_, why)| why.starts_with("not needed: the key it certifies is already trusted")),
        "{:?}",
        store.rejected
    );
    for country in COUNTRIES {
        let sod = read(&format!("sod/EF_SOD_{country}.bin"));
        let dgs = data_groups(country);
        let report = verify(&sod, &dgs, &store);
        assert_valid(&report, country);
        // The real data groups of dg/ match their SOD.
        for (n, _) in &dgs {
            let r = report.data_groups.iter().find(|d| d.number == *n).unwrap();
            assert_eq!(r.status, DataGroupStatus::Match, "{country} DG{n}");
        }
        // No CRL given: revocation is a warning, not a failure.
        let rev = report
            .checks
            .iter()
            .find(|c| c.name == "revocation")
            .unwrap();
        assert_eq!(rev.status, CheckStatus::Warning, "{country}");
    }
}

#[test]
fn every_sod_is_valid_against_the_german_master_list() {
    let ml = MasterList::parse(&read("masterlist/DE_ML_2026-05-28-08-28-45.ml")).unwrap();
    let root = TrustStore::new(
        vec![Certificate::from_der(&read("masterlist/DE_ROOT_CA_CSCA07.cer")).unwrap()],
        vec![],
    );
    assert!(ml.verify(&root, AT).valid);
    let mut trusted = ml.certificates.clone();
    // Indonesia is not on the list. Its first CSCA key (2010) is trusted out of band; the 2016
    // and 2020 keys become trusted only through the link certificates each older key signed.
    let idn = certs_in("csca")
        .into_iter()
        .filter(|c| c.subject.country() == Some("ID"));
    trusted.extend(idn.filter(|c| {
        c.kind() == CertificateKind::Link
            || c.subject_key_id
                .as_deref()
                .map(marty_icao::hex::encode)
                .as_deref()
                == Some("d406b05881c6430672d6d057318dd13cd8df8b77")
    }));
    let store = TrustStore::new(trusted, vec![]);
    for country in COUNTRIES {
        let report = verify(
            &read(&format!("sod/EF_SOD_{country}.bin")),
            &data_groups(country),
            &store,
        );
        assert_valid(&report, country);
    }
    let id = pa::passive_authentication(&read("sod/EF_SOD_ID.bin"), &[], &store, AT, false);
    assert!(
        matches!(
            id.csca.as_ref().map(|c| c.kind),
            Some(CertificateKind::Link)
        ),
        "{:?}",
        id.csca
    );
}

#[test]
fn quirks_of_real_sods_are_reported() {
    let store = TrustStore::new(certs_in("csca"), vec![]);
    let ru = pa::passive_authentication(&read("sod/EF_SOD_RU.bin"), &[], &store, AT, false);
    assert!(
        ru.warnings
            .iter()
            .any(|w| w.contains("SHA-1 is a weak digest")),
        "{:?}",
        ru.warnings
    );
    let de = Sod::parse(&read("sod/EF_SOD_DE.bin")).unwrap();
    let info = de.lds.lds_version_info.unwrap();
    assert_eq!(
        (info.lds_version.as_str(), info.unicode_version.as_str()),
        ("0108", "040000")
    );
    // NZ is BER with indefinite lengths and still verifies over its original bytes.
    let nz = read("sod/EF_SOD_NZ.bin");
    let content_info = marty_icao::der::parse_prefix(&nz)
        .unwrap()
        .children()
        .any("ContentInfo")
        .unwrap();
    assert!(
        content_info.indefinite,
        "EF_SOD_NZ.bin is expected to use indefinite lengths"
    );
    let nz = pa::passive_authentication(&nz, &[], &store, AT, false);
    assert_eq!(
        nz.sod.unwrap().signature_algorithm.unwrap(),
        "RSA PKCS#1 v1.5 (rsaEncryption OID as signature algorithm)"
    );
}

#[test]
fn bsi_reference_passport_is_indeterminate_with_dg15_uncovered() {
    let store = TrustStore::new(certs_in("csca"), vec![]);
    let dir = "bsi-reference";
    let mut dgs = Vec::new();
    for n in [1u8, 2, 3, 4, 14, 15] {
        dgs.push((n, read(&format!("{dir}/Datagroup{n}.bin"))));
    }
    let report =
        pa::passive_authentication(&read(&format!("{dir}/EF_SOD.bin")), &dgs, &store, AT, false);
    assert_eq!(report.verdict, Verdict::Indeterminate, "{report:#?}");
    let path = report
        .checks
        .iter()
        .find(|c| c.name == "certificate_path")
        .unwrap();
    assert_eq!(path.status, CheckStatus::Indeterminate);
    assert!(
        path.detail.starts_with("no trusted CSCA for issuer"),
        "{}",
        path.detail
    );
    assert_eq!(
        report
            .checks
            .iter()
            .find(|c| c.name == "sod_signature")
            .unwrap()
            .status,
        CheckStatus::Passed
    );
    for n in [1u8, 2, 3, 4, 14] {
        assert_eq!(
            report
                .data_groups
                .iter()
                .find(|d| d.number == n)
                .unwrap()
                .status,
            DataGroupStatus::Match,
            "DG{n}"
        );
    }
    assert_eq!(
        report
            .data_groups
            .iter()
            .find(|d| d.number == 15)
            .unwrap()
            .status,
        DataGroupStatus::PresentNotCovered
    );
    let mrz = report.mrz.unwrap();
    assert!(mrz.valid);
}

/// A genuine SOD with data groups it does not cover (here NZ's DG15 beside France's SOD)
/// authenticates nothing that was presented: INDETERMINATE, as when no data group is given.
#[test]
fn data_groups_the_sod_does_not_cover_authenticate_nothing() {
    let store = TrustStore::new(certs_in("csca"), vec![]);
    let dgs = vec![(15u8, read("dg/EF_DG15_NZ.bin"))];
    let report = pa::passive_authentication(&read("sod/EF_SOD_FR.bin"), &dgs, &store, AT, false);
    assert_eq!(report.verdict, Verdict::Indeterminate, "{report:#?}");
    let check = report
        .checks
        .iter()
        .find(|c| c.name == "data_group_hashes")
        .unwrap();
    assert_eq!(check.status, CheckStatus::Indeterminate);
    assert!(
        check.detail.contains("covers none of those given (DG15)"),
        "{}",
        check.detail
    );
}

/// A covered data group beside an uncovered one (a genuine DG12 with a DG15 that is not in the
/// SOD): what was not covered is not authenticated, so the document is not VALID.
#[test]
fn an_uncovered_data_group_beside_covered_ones_is_not_valid() {
    let store = TrustStore::new(certs_in("csca"), vec![]);
    let mut dgs = data_groups("FR");
    dgs.push((15, read("dg/EF_DG15_NZ.bin")));
    let report = pa::passive_authentication(&read("sod/EF_SOD_FR.bin"), &dgs, &store, AT, false);
    assert_eq!(report.verdict, Verdict::Indeterminate, "{report:#?}");
    let check = report
        .checks
        .iter()
        .find(|c| c.name == "uncovered_data_groups")
        .unwrap();
    assert!(
        check.detail.starts_with("DG15 given but not covered"),
        "{}",
        check.detail
    );
}

#[test]
fn a_tampered_data_group_is_invalid() {
    let store = TrustStore::new(certs_in("csca"), vec![]);
    let mut dgs = data_groups("FR");
    dgs[0].1[10] ^= 1;
    let report = pa::passive_authentication(&read("sod/EF_SOD_FR.bin"), &dgs, &store, AT, false);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert!(
        report.reason.contains("hash mismatch for DG"),
        "{}",
        report.reason
    );
}

#[test]
fn a_tampered_sod_signature_is_invalid_and_hashes_are_not_compared() {
    let store = TrustStore::new(certs_in("csca"), vec![]);
    let mut sod = read("sod/EF_SOD_AT.bin");
    let n = sod.len();
    sod[n - 5] ^= 0x55; // inside the signature
    let report = pa::passive_authentication(&sod, &data_groups("AT"), &store, AT, false);
    assert_eq!(report.verdict, Verdict::Invalid, "{report:#?}");
    assert!(
        report
            .data_groups
            .iter()
            .all(|d| d.status == DataGroupStatus::NotCompared
                || d.status == DataGroupStatus::Missing)
    );
}

#[test]
fn outside_the_validity_period_is_invalid() {
    let store = TrustStore::new(certs_in("csca"), vec![]);
    let report = pa::passive_authentication(
        &read("sod/EF_SOD_FR.bin"),
        &[],
        &store,
        datetime!(2040-01-01 00:00 UTC),
        false,
    );
    assert_eq!(report.verdict, Verdict::Invalid);
    assert!(
        report.reason.contains("the DSC is valid from"),
        "{}",
        report.reason
    );
}

#[test]
fn the_german_master_list_verifies_with_588_certificates() {
    let ml = MasterList::parse(&read("masterlist/DE_ML_2026-05-28-08-28-45.ml")).unwrap();
    assert_eq!(ml.certificates.len(), 588);
    assert!(ml.problems.is_empty());
    assert_eq!(ml.countries().len(), 112);
    // Self-signed certificates and link certificates of one key are both kept, and the key is
    // counted once (375 keys, as the independent Python verifier also counts).
    assert_eq!(ml.distinct_keys(), 375);
    let root = TrustStore::new(
        vec![Certificate::from_der(&read("masterlist/DE_ROOT_CA_CSCA07.cer")).unwrap()],
        vec![],
    );
    let v = ml.verify(&root, AT);
    assert!(v.valid, "{v:#?}");
    assert_eq!(v.signer_found_by, Some(marty_icao::cms::SignerMatch::Exact));
    // Against a root that did not sign it, the chain fails.
    let other = TrustStore::new(
        vec![Certificate::from_der(&read("crl/NL_ROOT_CA.cer")).unwrap()],
        vec![],
    );
    let v = ml.verify(&other, AT);
    assert!(!v.valid && v.signature_valid && !v.chain_valid);
}

#[test]
fn the_dutch_crl_verifies_and_is_stale() {
    let crl = Crl::from_der(&read("crl/CRL_NL_CSCA_7_crlnumber7_2025-05-19.crl")).unwrap();
    let nl = Certificate::from_der(&read("crl/NL_ROOT_CA.cer")).unwrap();
    crl.verify_signature(&nl).unwrap();
    assert_eq!(crl.version, 2);
    assert_eq!(crl.crl_number.as_deref(), Some(&[7u8][..]));
    assert_eq!(crl.authority_key_id, nl.subject_key_id);
    assert!(crl.is_stale(OffsetDateTime::now_utc()));
    assert!(!crl.is_stale(datetime!(2025-06-01 00:00 UTC)));
    // Signed by another key it does not verify.
    let fr = Certificate::from_der(&read("csca/CSCA_FR_5ba9a2069f.cer")).unwrap();
    assert!(crl.verify_signature(&fr).is_err());
}

#[test]
fn negative_vectors_are_rejected_each_with_its_own_error() {
    let e12 = Sod::parse(&read(
        "negative/12_neg_error_case_missing_signedInfo.cms.der",
    ))
    .unwrap_err();
    assert_eq!(e12, SodError::Cms(CmsError::NoSignerInfo));
    let e13 = Sod::parse(&read(
        "negative/13_neg_error_case_incorrect_OID_for_signed_data.cms.der",
    ))
    .unwrap_err();
    assert!(
        matches!(e13, SodError::Cms(CmsError::NotSignedData(_))),
        "{e13}"
    );
    let e14 = Sod::parse(&read(
        "negative/14_neg_error_case_invalid_contentInfo_unable_to.cms.der",
    ))
    .unwrap_err();
    assert!(matches!(e14, SodError::Cms(CmsError::Der(_))), "{e14}");
    let messages = [e12.to_string(), e13.to_string(), e14.to_string()];
    assert_eq!(
        messages[0],
        "SignedData has no SignerInfo: nothing signs this content"
    );
    assert!(
        messages[1].starts_with("ContentInfo contentType is "),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].starts_with("malformed CMS structure: at byte "),
        "{}",
        messages[2]
    );
}

#[test]
fn every_real_certificate_parses_and_classifies() {
    for c in certs_in("csca") {
        assert!(
            matches!(c.kind(), CertificateKind::Csca | CertificateKind::Link),
            "{c:?}"
        );
    }
}
