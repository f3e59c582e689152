//! `marty icao` end to end: artefacts issued by the CLI are accepted by Marty's own verifier and
//! by independent ones — the `openssl` CLI (RSA and named curves; it refuses the explicit EC
//! parameters Doc 9303 mandates) and a Python verifier built on asn1crypto + cryptography
//! (`scripts/oracle.py`, every case).

use std::path::Path;
use std::process::{Command, Output};

use marty_icao::lds::{self, FaceImage, ImageFormat};

use crate::harness::show;

const PASSPHRASE: &str = "integration-test-passphrase";

fn marty(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marty"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MARTY_KEY_PASSPHRASE", PASSPHRASE)
        .arg("icao")
        .args(args)
        .output()
        .unwrap()
}

/// `marty icao args…`, asserting its exit code.
fn marty_exit(dir: &Path, args: &[&str], code: i32) -> Output {
    let out = marty(dir, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "marty icao {args:?}:\n{}",
        show(&out)
    );
    out
}

fn marty_ok(dir: &Path, args: &[&str]) -> String {
    let out = marty(dir, args);
    assert!(out.status.success(), "marty icao {args:?}:\n{}", show(&out));
    String::from_utf8(out.stdout).unwrap()
}

use marty_testkit::tools::{openssl, openssl_ok, oracle as run_oracle};

/// The oracle accepts the artefact.
fn oracle(dir: &Path, args: &[&str]) -> serde_json::Value {
    let (code, report, shown) = run_oracle(dir, args);
    assert_eq!(code, Some(0), "oracle {args:?}:\n{shown}");
    report
}

/// The oracle rejects the artefact (exit 1, with a JSON error, not a crash).
fn oracle_rejects(dir: &Path, args: &[&str]) -> serde_json::Value {
    let (code, report, shown) = run_oracle(dir, args);
    assert_eq!(code, Some(1), "oracle should reject {args:?}:\n{shown}");
    report
}

fn to_pem(dir: &Path, der: &str, pem: &str) {
    openssl_ok(dir, &["x509", "-inform", "DER", "-in", der, "-out", pem]);
}

/// A minimal baseline JPEG header (SOI, SOF0 with 4×3 pixels, EOI): DG2 only scans headers.
fn tiny_jpeg() -> Vec<u8> {
    let mut v = vec![
        0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x03, 0x00, 0x04, 0x03,
    ];
    v.extend([0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
    v.extend([0xFF, 0xD9]);
    v
}

/// Issues CSCA, DSC and an EF.SOD over DG1 and DG2 with the CLI; returns the folder.
fn issue_passport(dir: &Path, key: &str, dsc_key: &str) {
    std::fs::create_dir_all(dir.join("trust")).unwrap();
    std::fs::create_dir_all(dir.join("passport")).unwrap();
    marty_ok(
        dir,
        &[
            "cert",
            "make-csca",
            "--country",
            "UT",
            "--mrz-country",
            "UTO",
            "--organization",
            "Utopia",
            "--common-name",
            "CSCA Utopia",
            "--key",
            key,
            "--crl-dp",
            "https://pkd.utopia.test/csca.crl",
            "--out",
            "trust/csca.der",
            "--key-out",
            "csca.key",
        ],
    );
    marty_ok(
        dir,
        &[
            "cert",
            "make-dsc",
            "--common-name",
            "DS Utopia 1",
            "--mrz-country",
            "UTO",
            "--csca",
            "trust/csca.der",
            "--csca-key",
            "csca.key",
            "--key",
            dsc_key,
            "--out",
            "dsc.der",
            "--key-out",
            "dsc.key",
        ],
    );
    let mrz_text = marty_ok(
        dir,
        &[
            "mrz",
            "make",
            "--issuing-state",
            "UTO",
            "--document-number",
            "L898902C3",
            "--primary",
            "Eriksson",
            "--secondary",
            "Anna María",
            "--nationality",
            "UTO",
            "--birth",
            "740812",
            "--sex",
            "F",
            "--expiry",
            "340415",
        ],
    );
    let mrz = marty_icao::mrz::parse(&mrz_text).unwrap();
    std::fs::write(dir.join("passport/dg1"), lds::build_dg1(&mrz)).unwrap();
    let face = FaceImage {
        format: ImageFormat::Jpeg,
        width: 0,
        height: 0,
        data: tiny_jpeg(),
    };
    std::fs::write(dir.join("passport/dg2"), lds::build_dg2(&face).unwrap()).unwrap();
    marty_ok(
        dir,
        &[
            "sod",
            "make",
            "--dsc",
            "dsc.der",
            "--key",
            "dsc.key",
            "--dg",
            "passport/dg1",
            "--dg",
            "passport/dg2",
            "--signing-time",
            "--out",
            "passport/sod",
        ],
    );
}

/// The ContentInfo inside the 0x77 wrapper.
fn unwrap_sod(dir: &Path) {
    let sod = std::fs::read(dir.join("passport/sod")).unwrap();
    let tlv = marty_icao::der::parse(&sod).unwrap();
    std::fs::write(dir.join("sod.p7"), tlv.value).unwrap();
}

struct Case {
    key: &'static str,
    /// The openssl CLI accepts the keys (RSA, named curves).
    openssl: bool,
}

const CASES: &[Case] = &[
    Case {
        key: "ec:P-256:named",
        openssl: true,
    },
    Case {
        key: "ec:P-384:named",
        openssl: true,
    },
    Case {
        key: "ec:P-521:named",
        openssl: true,
    },
    Case {
        key: "ec:brainpoolP256r1:named",
        openssl: true,
    },
    Case {
        key: "ec:brainpoolP384r1:named",
        openssl: true,
    },
    Case {
        key: "ec:brainpoolP512r1:named",
        openssl: true,
    },
    Case {
        key: "ec:P-256:explicit",
        openssl: false,
    },
    Case {
        key: "ec:brainpoolP256r1:explicit",
        openssl: false,
    },
    Case {
        key: "ec:brainpoolP384r1:explicit",
        openssl: false,
    },
    Case {
        key: "ec:brainpoolP512r1:explicit",
        openssl: false,
    },
    Case {
        key: "rsa:2048",
        openssl: true,
    },
    Case {
        key: "rsa-pss:2048",
        openssl: true,
    },
];

#[test]
fn issued_passports_verify_with_marty_openssl_and_the_python_oracle() {
    for case in CASES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        issue_passport(dir, case.key, case.key);

        // Marty's own Passive Authentication.
        let out = marty(dir, &["pa", "passport", "--trust", "trust", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", case.key, show(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["verdict"], "VALID");
        assert_eq!(report["mrz"]["valid"], true);

        // The independent Python verifier, for every case (explicit parameters included).
        let csca = oracle(dir, &["cert", "trust/csca.der"]);
        assert_eq!(csca["ok"], true, "{}", case.key);
        let dsc = oracle(dir, &["cert", "dsc.der", "--issuer", "trust/csca.der"]);
        assert_eq!(dsc["ok"], true, "{}", case.key);
        let sod = oracle(
            dir,
            &[
                "sod",
                "passport/sod",
                "--dg",
                "1=passport/dg1",
                "--dg",
                "2=passport/dg2",
            ],
        );
        assert_eq!(sod["ok"], true, "{}: {sod}", case.key);

        if case.openssl {
            to_pem(dir, "trust/csca.der", "csca.pem");
            to_pem(dir, "dsc.der", "dsc.pem");
            let verified = openssl_ok(
                dir,
                &["verify", "-x509_strict", "-CAfile", "csca.pem", "dsc.pem"],
            );
            assert!(verified.contains("dsc.pem: OK"), "{}: {verified}", case.key);
            unwrap_sod(dir);
            openssl_ok(
                dir,
                &[
                    "cms", "-verify", "-inform", "DER", "-in", "sod.p7", "-CAfile", "csca.pem",
                    "-purpose", "any", "-out", "lds.der",
                ],
            );
            let lds_content = std::fs::read(dir.join("lds.der")).unwrap();
            let parsed = marty_icao::sod::LdsSecurityObject::parse(&lds_content).unwrap();
            assert_eq!(parsed.data_group_hashes.len(), 2);
        }
    }
}

#[test]
fn crls_and_master_lists_verify_independently() {
    for case in [&CASES[0], &CASES[7], &CASES[11]] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        issue_passport(dir, case.key, "ec:P-256:named");
        let dsc_serial = serde_json::from_str::<serde_json::Value>(&marty_ok(
            dir,
            &["cert", "inspect", "dsc.der", "--json"],
        ))
        .unwrap()["serial"]
            .as_str()
            .unwrap()
            .to_owned();
        // A CRL revoking the DSC: the passport becomes INVALID.
        marty_ok(
            dir,
            &[
                "crl",
                "make",
                "--csca",
                "trust/csca.der",
                "--csca-key",
                "csca.key",
                "--number",
                "1",
                "--revoke",
                &dsc_serial,
                "--out",
                "trust/csca.crl",
            ],
        );
        marty_exit(
            dir,
            &[
                "crl",
                "verify",
                "trust/csca.crl",
                "--issuer",
                "trust/csca.der",
            ],
            0,
        );
        let out = marty_exit(dir, &["pa", "passport", "--trust", "trust"], 1);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("the DSC is listed on the CRL"),
            "{}",
            show(&out)
        );
        let crl = oracle(
            dir,
            &["crl", "trust/csca.crl", "--issuer", "trust/csca.der"],
        );
        assert_eq!(crl["ok"], true);
        assert_eq!(crl["stale"], false);

        // A master list signer and a master list of the CSCA.
        marty_ok(
            dir,
            &[
                "cert",
                "make-ml-signer",
                "--common-name",
                "ML Signer Utopia",
                "--mrz-country",
                "UTO",
                "--csca",
                "trust/csca.der",
                "--csca-key",
                "csca.key",
                "--key",
                "ec:P-256:named",
                "--out",
                "mls.der",
                "--key-out",
                "mls.key",
            ],
        );
        marty_ok(
            dir,
            &[
                "masterlist",
                "make",
                "--cert",
                "trust/csca.der",
                "--signer",
                "mls.der",
                "--signer-key",
                "mls.key",
                "--csca",
                "trust/csca.der",
                "--out",
                "ml.der",
            ],
        );
        marty_exit(
            dir,
            &[
                "masterlist",
                "verify",
                "ml.der",
                "--root",
                "trust/csca.der",
                "--json",
            ],
            0,
        );
        let ml = oracle(dir, &["masterlist", "ml.der", "--root", "trust/csca.der"]);
        assert_eq!(ml["ok"], true, "{ml}");
        // PA with the master list as the trust source.
        marty_exit(
            dir,
            &[
                "pa",
                "passport",
                "--masterlist",
                "ml.der",
                "--ml-root",
                "trust/csca.der",
            ],
            0,
        );

        if case.openssl {
            to_pem(dir, "trust/csca.der", "csca.pem");
            let crl_check = openssl_ok(
                dir,
                &[
                    "crl",
                    "-inform",
                    "DER",
                    "-in",
                    "trust/csca.crl",
                    "-CAfile",
                    "csca.pem",
                    "-noout",
                ],
            );
            assert!(crl_check.contains("verify OK"), "{crl_check}");
            openssl_ok(
                dir,
                &[
                    "cms",
                    "-verify",
                    "-inform",
                    "DER",
                    "-in",
                    "ml.der",
                    "-CAfile",
                    "csca.pem",
                    "-purpose",
                    "any",
                    "-out",
                    "ml-content.der",
                ],
            );
        }
    }
}

#[test]
fn independent_verifiers_reject_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    issue_passport(dir, "ec:P-256:named", "ec:P-256:named");
    let mut sod = std::fs::read(dir.join("passport/sod")).unwrap();
    let n = sod.len();
    sod[n - 3] ^= 0x01;
    std::fs::write(dir.join("passport/sod"), &sod).unwrap();
    marty_exit(dir, &["pa", "passport", "--trust", "trust"], 1);
    let rejected = oracle_rejects(dir, &["sod", "passport/sod"]);
    assert_eq!(rejected["ok"], false);
    unwrap_sod(dir);
    to_pem(dir, "trust/csca.der", "csca.pem");
    assert!(
        !openssl(
            dir,
            &[
                "cms", "-verify", "-inform", "DER", "-in", "sod.p7", "-CAfile", "csca.pem",
                "-purpose", "any", "-out", "x"
            ]
        )
        .status
        .success()
    );
}

#[test]
fn exit_codes_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let v = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    let vs = |p: &str| v.join(p).display().to_string();
    // Usage error: 3.
    assert_eq!(marty(dir, &["pa"]).status.code(), Some(3));
    assert_eq!(
        marty(dir, &["sod", "inspect", "/nonexistent"])
            .status
            .code(),
        Some(3)
    );
    // Indeterminate: the BSI reference passport (CSCA not published).
    std::fs::create_dir_all(dir.join("bsi")).unwrap();
    for f in std::fs::read_dir(v.join("bsi-reference")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.join("bsi").join(f.file_name())).unwrap();
    }
    let out = marty_exit(dir, &["pa", "bsi", "--trust", &vs("csca"), "--json"], 2);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"], "INDETERMINATE");
    let dg15 = report["data_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["number"] == 15)
        .unwrap()
        .clone();
    assert_eq!(dg15["status"], "present_not_covered");
    // The stale Dutch CRL: signature valid, stale → 2.
    let out = marty_exit(
        dir,
        &[
            "crl",
            "verify",
            &vs("crl/CRL_NL_CSCA_7_crlnumber7_2025-05-19.crl"),
            "--issuer",
            &vs("crl/NL_ROOT_CA.cer"),
            "--json",
        ],
        2,
    );
    let crl: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (crl["signature_valid"].clone(), crl["stale"].clone()),
        (serde_json::json!(true), serde_json::json!(true))
    );
    // Valid at a time before its nextUpdate.
    marty_exit(
        dir,
        &[
            "crl",
            "verify",
            &vs("crl/CRL_NL_CSCA_7_crlnumber7_2025-05-19.crl"),
            "--issuer",
            &vs("crl/NL_ROOT_CA.cer"),
            "--at",
            "2025-06-01",
        ],
        0,
    );
    // The German master list: 588 certificates.
    let out = marty_exit(
        dir,
        &[
            "masterlist",
            "verify",
            &vs("masterlist/DE_ML_2026-05-28-08-28-45.ml"),
            "--root",
            &vs("masterlist/DE_ROOT_CA_CSCA07.cer"),
            "--json",
        ],
        0,
    );
    let ml: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ml["certificates"], 588);
    // The independent verifier agrees: 588 certificates, 375 distinct keys.
    let independent = oracle(
        dir,
        &[
            "masterlist",
            &vs("masterlist/DE_ML_2026-05-28-08-28-45.ml"),
            "--root",
            &vs("masterlist/DE_ROOT_CA_CSCA07.cer"),
        ],
    );
    assert_eq!(
        (
            independent["count"].clone(),
            independent["distinct_public_keys"].clone()
        ),
        (serde_json::json!(588), ml["distinct_keys"].clone())
    );
    assert_eq!(ml["distinct_keys"], 375);
    // Negative SODs: INVALID, each with its own reason.
    let mut reasons = Vec::new();
    for f in [
        "12_neg_error_case_missing_signedInfo",
        "13_neg_error_case_incorrect_OID_for_signed_data",
        "14_neg_error_case_invalid_contentInfo_unable_to",
    ] {
        let out = marty_exit(
            dir,
            &[
                "sod",
                "verify",
                &vs(&format!("negative/{f}.cms.der")),
                "--trust",
                &vs("csca"),
                "--json",
            ],
            1,
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        reasons.push(r["reason"].as_str().unwrap().to_owned());
    }
    reasons.dedup();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    // Keys are never written without a passphrase.
    let out = Command::new(env!("CARGO_BIN_EXE_marty"))
        .current_dir(dir)
        .env_clear()
        .args([
            "icao",
            "cert",
            "make-csca",
            "--country",
            "UT",
            "--mrz-country",
            "UTO",
            "--common-name",
            "x",
            "--crl-dp",
            "https://x.test/c.crl",
            "--out",
            "c.der",
            "--key-out",
            "c.key",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set MARTY_KEY_PASSPHRASE"),
        "{}",
        show(&out)
    );
    assert!(!dir.join("c.key").exists() && !dir.join("c.der").exists());
}
