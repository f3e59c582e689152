//! The `marty` binary as a user meets it: exit codes, errors (also as JSON), hostile inputs,
//! files it writes, key files, and the README's example run as written.

use std::path::Path;
use std::process::{Command, Output};

use marty_icao::algo;
use marty_icao::der::{self, Tag};
use marty_icao::issue::{self, CertificateRequest, Curve, KeyPair, KeySpec, Period, Subject};
use marty_icao::name::Name;
use marty_icao::{masterlist, oid};
use time::{Duration, OffsetDateTime};

use crate::harness::show;

const PASSPHRASE: &str = "toolkit-test-passphrase";

fn marty(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_marty"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MARTY_KEY_PASSPHRASE", PASSPHRASE)
        // No configuration file here: commands that need one must say so.
        .env("MARTY_CONFIG_DIR", dir.join("no-config"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).output().unwrap()
}

fn exit(dir: &Path, args: &[&str], code: i32) -> Output {
    let out = marty(dir, args, &[]);
    assert_eq!(
        out.status.code(),
        Some(code),
        "marty {args:?}\n{}",
        show(&out)
    );
    out
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn vector(path: &str) -> String {
    format!("{}/../../shared/vectors/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn nest(tag: u8, levels: usize, leaf: &[u8]) -> Vec<u8> {
    let mut inner = leaf.to_vec();
    for _ in 0..levels {
        let mut outer = vec![tag];
        outer.extend(der::length(inner.len()));
        outer.extend(inner);
        inner = outer;
    }
    inner
}

/// ContentInfo { signedData, SignedData { …, encapContentInfo { type, [0] econtent } } }.
fn signed_data(content_type: &'static str, econtent: &[u8]) -> Vec<u8> {
    let sha256 = der::sequence(&[&der::Oid::known(oid::SHA256).to_der()]);
    let eci = der::sequence(&[
        &der::Oid::known(content_type).to_der(),
        &der::explicit(0, econtent),
    ]);
    let sd = der::sequence(&[
        &der::integer(3),
        &der::set_of(vec![sha256]),
        &eci,
        &der::tlv(Tag::SET, &[]),
    ]);
    der::sequence(&[
        &der::Oid::known(oid::SIGNED_DATA).to_der(),
        &der::explicit(0, &sd),
    ])
}

#[test]
fn hostile_nesting_is_an_input_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let deep = nest(0x24, 20_000, &der::octet_string(b"x"));
    let sod = der::tlv(
        Tag::application(23, true),
        &signed_data(oid::LDS_SECURITY_OBJECT, &deep),
    );
    std::fs::create_dir_all(d.join("passport")).unwrap();
    std::fs::write(d.join("passport/sod.bin"), &sod).unwrap();
    std::fs::write(d.join("passport/dg1.bin"), [0x61, 0x00]).unwrap();
    std::fs::write(d.join("ml.bin"), signed_data(oid::CSCA_MASTER_LIST, &deep)).unwrap();
    let csca = vector("csca");
    for args in [
        vec!["icao", "sod", "inspect", "passport/sod.bin"],
        vec![
            "icao",
            "sod",
            "verify",
            "passport/sod.bin",
            "--trust",
            &csca,
        ],
        vec!["icao", "pa", "passport", "--trust", &csca],
        vec!["icao", "masterlist", "inspect", "ml.bin"],
    ] {
        let out = exit(d, &args, 3);
        let (_, err) = text(&out);
        assert!(
            err.contains("nesting deeper than 64 levels"),
            "{args:?}: {err}"
        );
        // With --json the error is also a JSON object on stdout.
        let mut json_args = args.clone();
        json_args.push("--json");
        let out = exit(d, &json_args, 3);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["kind"], "input", "{report}");
        assert!(report["error"].as_str().unwrap().contains("nesting deeper"));
    }
}

/// A self-signed CSCA certificate whose subject is `subject` (built here: Marty's issuing code
/// refuses such a country, a hostile master list would not).
fn certificate_with_subject(subject: &Name, key: &KeyPair) -> Vec<u8> {
    let alg = key.signature_algorithm();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let mut validity = der::time(now - Duration::days(1));
    validity.extend(der::time(now + Duration::days(365)));
    let ski = issue::key_identifier(&key.spki);
    let exts = der::sequence(&[
        &der::sequence(&[
            &der::Oid::known(oid::BASIC_CONSTRAINTS).to_der(),
            &der::boolean(true),
            &der::octet_string(&der::sequence(&[&der::boolean(true), &der::integer(0)])),
        ]),
        &der::sequence(&[
            &der::Oid::known(oid::SUBJECT_KEY_IDENTIFIER).to_der(),
            &der::octet_string(&der::octet_string(&ski)),
        ]),
    ]);
    let tbs = der::sequence(&[
        &der::explicit(0, &der::integer(2)),
        &der::unsigned_integer(&issue::random_serial()),
        &alg.to_der(),
        &subject.raw,
        &der::tlv(Tag::SEQUENCE, &validity),
        &subject.raw,
        &key.spki,
        &der::explicit(3, &exts),
    ]);
    let signature = algo::sign(&key.private, &alg, &tbs).unwrap();
    der::sequence(&[&tbs, &alg.to_der(), &der::bit_string(0, &signature)])
}

fn p256() -> KeyPair {
    KeyPair::generate(KeySpec::Ec {
        curve: Curve::P256,
        explicit: false,
    })
    .unwrap()
}

#[test]
fn masterlist_extract_never_writes_outside_its_folder_and_says_when_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A real CSCA and Master List Signer of Utopia, and one hostile certificate in the list.
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(1);
    let request = |cn: &str| CertificateRequest {
        subject: Subject {
            country: "UT".into(),
            mrz_country: "UTO".into(),
            organization: None,
            common_name: cn.into(),
        },
        period: Period {
            not_before: start,
            not_after: start + Duration::days(3650),
            key_usage_not_before: start,
            key_usage_not_after: start + Duration::days(365),
        },
        crl_distribution_point: "https://pkd.utopia.test/csca.crl".into(),
        serial: None,
    };
    let csca_key = p256();
    let csca = issue::make_csca(&request("CSCA Utopia"), &csca_key).unwrap();
    let mls_key = p256();
    let mls = issue::make_ml_signer(
        &csca,
        &csca_key,
        &request("CSCA Utopia").subject,
        &request("MLS Utopia"),
        &mls_key.spki,
    )
    .unwrap();
    let evil = Name::build(&[(oid::COUNTRY, "../../../X"), (oid::COMMON_NAME, "evil")]);
    let evil_cert =
        marty_icao::cert::Certificate::from_der(&certificate_with_subject(&evil, &p256())).unwrap();
    assert_eq!(evil_cert.subject.country(), Some("../../../X"));
    // Marty would not build such a list (masterlist::build refuses the hostile entry), so
    // sign one the way another party could.
    assert!(
        masterlist::build(
            &[csca.clone(), evil_cert.clone()],
            &mls,
            &csca,
            &mls_key.private,
            mls_key.digest(),
            mls_key.signature_algorithm(),
            start,
        )
        .is_err()
    );
    let content = der::sequence(&[
        &der::integer(0),
        &der::set_of(vec![csca.raw.clone(), evil_cert.raw.clone()]),
    ]);
    let ml = marty_icao::cms::sign(&marty_icao::cms::SignRequest {
        content_type: oid::CSCA_MASTER_LIST,
        content: &content,
        signer: &mls,
        extra_certificates: &[&csca],
        key: &mls_key.private,
        digest: mls_key.digest(),
        signature_algorithm: mls_key.signature_algorithm(),
        sid: marty_icao::cms::SidChoice::SubjectKeyIdentifier,
        signing_time: Some(start),
        detached: false,
    })
    .unwrap();
    let work = d.join("a/b/c");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("ml.der"), &ml).unwrap();
    std::fs::write(work.join("root.der"), &csca.raw).unwrap();

    let out = exit(
        &work,
        &["icao", "masterlist", "extract", "ml.der", "--out", "out"],
        0,
    );
    let (stdout, stderr) = text(&out);
    assert!(
        stderr.contains("WARNING: ml.der was NOT verified"),
        "{stderr}"
    );
    assert!(stdout.contains("UNVERIFIED"), "{stdout}");
    let names: Vec<String> = std::fs::read_dir(work.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("XX_")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("UT_")), "{names:?}");
    // Nothing was written where the country's ../../../ pointed.
    for up in [d.to_path_buf(), d.join("a"), d.join("a/b")] {
        for entry in std::fs::read_dir(&up).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".cer"), "{} holds {name}", up.display());
        }
    }
    // With --root the list is verified first; a wrong root writes nothing and exits 1.
    let out = exit(
        &work,
        &[
            "icao",
            "masterlist",
            "extract",
            "ml.der",
            "--out",
            "verified",
            "--root",
            "root.der",
            "--json",
        ],
        0,
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true, "{report}");
    let other = issue::make_csca(&request("Another CSCA"), &p256()).unwrap();
    std::fs::write(work.join("other.der"), &other.raw).unwrap();
    exit(
        &work,
        &[
            "icao",
            "masterlist",
            "extract",
            "ml.der",
            "--out",
            "refused",
            "--root",
            "other.der",
        ],
        1,
    );
    assert!(!work.join("refused").exists());
}

#[test]
fn existing_files_are_kept_without_force_and_keys_resist_guessing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let make = |extra: &[&str]| {
        let mut args = vec![
            "icao",
            "cert",
            "make-csca",
            "--country",
            "UT",
            "--mrz-country",
            "UTO",
            "--common-name",
            "CSCA Utopia",
            "--key",
            "ec:prime256v1",
            "--crl-dp",
            "https://pkd.utopia.test/c.crl",
            "--out",
            "keys/csca.der",
            "--key-out",
            "keys/csca.key",
        ];
        args.extend_from_slice(extra);
        marty(d, &args, &[])
    };
    let out = make(&[]);
    assert!(out.status.success(), "{}", show(&out));
    let cert = std::fs::read(d.join("keys/csca.der")).unwrap();
    let key = std::fs::read(d.join("keys/csca.key")).unwrap();
    let out = make(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        text(&out)
            .1
            .contains("keys/csca.der exists: refusing to overwrite it (pass --force"),
        "{}",
        show(&out)
    );
    assert_eq!(std::fs::read(d.join("keys/csca.der")).unwrap(), cert);
    assert_eq!(std::fs::read(d.join("keys/csca.key")).unwrap(), key);
    let out = make(&["--force"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_ne!(std::fs::read(d.join("keys/csca.der")).unwrap(), cert);

    // The key file: PBES2, PBKDF2-HMAC-SHA256 at 600,000 iterations, AES-256-CBC — read back
    // by OpenSSL's own tools.
    let parsed = Command::new("openssl")
        .current_dir(d)
        .args(["asn1parse", "-in", "keys/csca.key"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&parsed.stdout);
    for expected in [
        "PBES2",
        "PBKDF2",
        ":0927C0",
        "hmacWithSHA256",
        "aes-256-cbc",
    ] {
        assert!(listing.contains(expected), "missing {expected}:\n{listing}");
    }
    let read = Command::new("openssl")
        .current_dir(d)
        .args([
            "pkey",
            "-in",
            "keys/csca.key",
            "-passin",
            &format!("pass:{PASSPHRASE}"),
            "-noout",
        ])
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", show(&read));
    // A short passphrase is refused before anything is generated.
    let out = marty(
        d,
        &[
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
            "short.der",
            "--key-out",
            "short.key",
        ],
        &[("MARTY_KEY_PASSPHRASE", "short")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(text(&out).1.contains("use at least 12"), "{}", show(&out));
    assert!(!d.join("short.key").exists());
}

#[test]
fn mrz_dates_must_be_calendar_dates_and_wrong_digits_fail_parse_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let make = |birth: &str| {
        marty(
            d,
            &[
                "icao",
                "mrz",
                "make",
                "--issuing-state",
                "UTO",
                "--document-number",
                "L898902C3",
                "--primary",
                "ERIKSSON",
                "--nationality",
                "UTO",
                "--birth",
                birth,
                "--sex",
                "F",
                "--expiry",
                "340415",
            ],
            &[],
        )
    };
    let out = make("741312");
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(text(&out).1.contains("month 01 to 12"), "{}", show(&out));
    let out = make("740230");
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(text(&out).1.contains("day 01 to 28"), "{}", show(&out));
    assert!(make("840229").status.success());
    assert!(make("84<<<<").status.success());
    // Month 13 with correct check digits: check and parse both exit 1.
    let bad_month = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7413128F3404159<<<<<<<<<<<<<<<4";
    for command in ["check", "parse"] {
        let out = exit(d, &["icao", "mrz", command, bad_month], 1);
        assert!(text(&out).0.contains("month 01 to 12"), "{}", show(&out));
    }
    // A wrong check digit: parse shows the fields and still exits 1.
    let wrong_digit = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C35UTO7408122F3404159<<<<<<<<<<<<<<<4";
    let out = exit(d, &["icao", "mrz", "parse", wrong_digit], 1);
    assert!(
        text(&out).0.contains("WRONG (expected 6)"),
        "{}",
        show(&out)
    );
    let out = exit(d, &["icao", "mrz", "parse", wrong_digit, "--json"], 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
}

#[test]
fn one_exit_code_convention_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Usage errors exit 3 in every command group.
    for args in [
        vec!["db", "verify", "--no-such-flag"],
        vec!["icao", "pa"],
        vec!["config", "show", "--service", "vault"],
        vec!["events", "status", "--bogus"],
        vec!["no-such-command"],
    ] {
        let out = exit(d, &args, 3);
        let mut json_args = args.clone();
        json_args.push("--json");
        let out_json = marty(d, &json_args, &[]);
        assert_eq!(out_json.status.code(), Some(3), "{}", show(&out_json));
        let report: serde_json::Value = serde_json::from_slice(&out_json.stdout)
            .unwrap_or_else(|_| panic!("{args:?}: {}", show(&out_json)));
        assert_eq!(report["kind"], "usage", "{report}");
        assert!(!text(&out).1.is_empty());
    }
    // An input error of `marty icao` and a configuration error, as JSON.
    let out = exit(d, &["icao", "sod", "inspect", "missing.bin", "--json"], 3);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kind"], "input");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("cannot read missing.bin")
    );
    let out = exit(d, &["config", "show", "--json"], 3);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kind"], "configuration", "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("MARTY_CONFIG_DIR")
    );
    // Help is not an error.
    exit(d, &["db", "verify", "--help"], 0);
}

#[test]
fn messages_say_each_cause_once_and_show_no_debug_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let negative = vector("negative/14_neg_error_case_invalid_contentInfo_unable_to.cms.der");
    let out = exit(d, &["icao", "sod", "inspect", &negative], 3);
    let (_, err) = text(&out);
    let cause = err
        .split("at byte")
        .nth(1)
        .map(|rest| format!("at byte{}", rest.split(':').next().unwrap_or_default()))
        .unwrap_or_default();
    assert!(!cause.is_empty(), "{err}");
    assert_eq!(
        err.matches(&cause).count(),
        1,
        "the cause is repeated: {err}"
    );

    let csca = vector("csca/CSCA_FR_5ba9a2069f.cer");
    let (stdout, _) = text(&exit(d, &["icao", "cert", "inspect", &csca], 0));
    assert!(stdout.starts_with("CSCA certificate"), "{stdout}");
    let ml = vector("masterlist/DE_ML_2026-05-28-08-28-45.ml");
    let root = vector("masterlist/DE_ROOT_CA_CSCA07.cer");
    let (stdout, _) = text(&exit(
        d,
        &["icao", "masterlist", "verify", &ml, "--root", &root],
        0,
    ));
    assert!(stdout.contains("(found by its identifier)"), "{stdout}");
    assert!(
        stdout.contains("signer chain: master list signer signed by trusted CSCA"),
        "{stdout}"
    );
    assert!(!stdout.contains("DSC"), "{stdout}");
    for out in [&stdout] {
        for debug in [
            "Some(",
            "Exact",
            "(Csca)",
            "DocumentSigner:",
            "MasterListSigner",
        ] {
            assert!(!out.contains(debug), "Debug text {debug:?} in:\n{out}");
        }
    }
    // A passport verified against an unverified master list says so first.
    let fr = vector("sod/EF_SOD_FR.bin");
    std::fs::create_dir_all(d.join("fr")).unwrap();
    std::fs::copy(&fr, d.join("fr/sod.bin")).unwrap();
    std::fs::copy(vector("dg/EF_DG14_FR.bin"), d.join("fr/dg14.bin")).unwrap();
    let out = marty(
        d,
        &[
            "icao",
            "pa",
            "fr",
            "--masterlist",
            &ml,
            "--at",
            "2026-06-01",
        ],
        &[],
    );
    let (stdout, _) = text(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("Passive Authentication: VALID with"),
        "{stdout}"
    );
    assert!(lines[1].contains("UNVERIFIED TRUST"), "{stdout}");
    assert!(!stdout.contains("every check passed"), "{stdout}");
}

#[test]
fn a_sod_signed_by_a_csca_is_refused_by_sod_make() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let csca = [
        "icao",
        "cert",
        "make-csca",
        "--country",
        "UT",
        "--mrz-country",
        "UTO",
        "--common-name",
        "CSCA Utopia",
        "--key",
        "ec:secp256r1:named",
        "--crl-dp",
        "https://pkd.utopia.test/c.crl",
        "--out",
        "csca.der",
        "--key-out",
        "csca.key",
    ];
    exit(d, &csca, 0);
    std::fs::write(d.join("dg14.bin"), [0x6E, 0x01, 0x00]).unwrap();
    let out = exit(
        d,
        &[
            "icao", "sod", "make", "--dsc", "csca.der", "--key", "csca.key", "--dg", "dg14.bin",
            "--out", "sod.bin",
        ],
        3,
    );
    assert!(
        text(&out).1.contains("not a Document Signer"),
        "{}",
        show(&out)
    );
    assert!(!d.join("sod.bin").exists());
}

#[test]
fn curve_names_as_openssl_spells_them() {
    for (spec, curve) in [
        ("ec:prime256v1", Curve::P256),
        ("ec:secp256r1:named", Curve::P256),
        ("ec:secp384r1", Curve::P384),
        ("ec:secp521r1:explicit", Curve::P521),
        ("ec:P-384", Curve::P384),
        ("ec:brainpoolP512r1", Curve::BrainpoolP512r1),
    ] {
        match spec.parse::<KeySpec>() {
            Ok(KeySpec::Ec { curve: c, .. }) => assert_eq!(c, curve, "{spec}"),
            other => panic!("{spec}: {other:?}"),
        }
    }
    let err = "ec:secp999r1".parse::<KeySpec>().unwrap_err();
    assert!(err.contains("P-256 (prime256v1, secp256r1)"), "{err}");
}

#[test]
fn the_readme_example_runs_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("```sh\n# From the repository root")
        .expect("the README's marty icao example");
    let block = &readme[start + 6..];
    let script = &block[..block.find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("samples")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../samples/face.jpg"),
        d.join("samples/face.jpg"),
    )
    .unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_marty")).parent().unwrap();
    let out = Command::new("bash")
        .current_dir(d)
        .env_clear()
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out)
            .0
            .contains("Passive Authentication: VALID with 1 warning"),
        "{}",
        show(&out)
    );
}

#[test]
fn issuing_refuses_what_is_not_a_ca_or_names_two_states() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A CSCA of Utopia that calls itself D (Germany) in its subjectAltName.
    let out = exit(
        d,
        &[
            "icao",
            "cert",
            "make-csca",
            "--country",
            "UT",
            "--mrz-country",
            "D",
            "--common-name",
            "CSCA Utopia",
            "--key",
            "ec:P-256:named",
            "--crl-dp",
            "https://x.test/c.crl",
            "--out",
            "bad.der",
            "--key-out",
            "bad.key",
        ],
        3,
    );
    assert!(
        text(&out)
            .1
            .contains("MRZ country code D is DE's, not UT's"),
        "{}",
        show(&out)
    );
    // A proper CSCA and DSC; then the DSC's key tries to act as a CA.
    let csca = [
        "icao",
        "cert",
        "make-csca",
        "--country",
        "UT",
        "--mrz-country",
        "UTO",
        "--common-name",
        "CSCA Utopia",
        "--key",
        "ec:P-256:named",
        "--crl-dp",
        "https://x.test/c.crl",
        "--out",
        "csca.der",
        "--key-out",
        "csca.key",
    ];
    exit(d, &csca, 0);
    let dsc = [
        "icao",
        "cert",
        "make-dsc",
        "--csca",
        "csca.der",
        "--csca-key",
        "csca.key",
        "--mrz-country",
        "UTO",
        "--key",
        "ec:P-256:named",
        "--common-name",
        "DS",
        "--out",
        "dsc.der",
        "--key-out",
        "dsc.key",
    ];
    exit(d, &dsc, 0);
    for args in [
        vec![
            "icao",
            "cert",
            "make-dsc",
            "--csca",
            "dsc.der",
            "--csca-key",
            "dsc.key",
            "--mrz-country",
            "UTO",
            "--common-name",
            "DS2",
            "--out",
            "dsc2.der",
            "--key-out",
            "dsc2.key",
        ],
        vec![
            "icao",
            "crl",
            "make",
            "--csca",
            "dsc.der",
            "--csca-key",
            "dsc.key",
            "--number",
            "1",
            "--out",
            "bad.crl",
        ],
        vec![
            "icao",
            "masterlist",
            "make",
            "--cert",
            "dsc.der",
            "--signer",
            "dsc.der",
            "--signer-key",
            "dsc.key",
            "--csca",
            "csca.der",
            "--out",
            "bad.ml",
        ],
    ] {
        let out = exit(d, &args, 3);
        assert!(
            text(&out).1.contains("is not a CSCA")
                || text(&out).1.contains("is not a Master List Signer"),
            "{args:?}: {}",
            show(&out)
        );
    }
    // --out and --key-out naming one file (even spelled differently) would lose the key.
    let out = exit(
        d,
        &[
            "icao",
            "cert",
            "make-csca",
            "--country",
            "UT",
            "--mrz-country",
            "UTO",
            "--common-name",
            "X",
            "--crl-dp",
            "https://x.test/c.crl",
            "--out",
            "a/c.der",
            "--key-out",
            "./a/../a/c.der",
            "--force",
        ],
        3,
    );
    assert!(
        text(&out).1.contains("name the same file"),
        "{}",
        show(&out)
    );
    // A passphrase of spaces is no passphrase.
    let out = marty(
        d,
        &[
            "icao",
            "cert",
            "make-csca",
            "--country",
            "UT",
            "--mrz-country",
            "UTO",
            "--common-name",
            "X",
            "--crl-dp",
            "https://x.test/c.crl",
            "--out",
            "s.der",
            "--key-out",
            "s.key",
        ],
        &[("MARTY_KEY_PASSPHRASE", "            ")],
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    // sod verify is headed as what it is.
    exit(
        d,
        &[
            "icao",
            "mrz",
            "make",
            "--issuing-state",
            "UTO",
            "--document-number",
            "X1",
            "--primary",
            "A",
            "--nationality",
            "UTO",
            "--birth",
            "800101",
            "--sex",
            "F",
            "--expiry",
            "350101",
            "--dg1",
            "p/dg1.bin",
        ],
        0,
    );
    exit(
        d,
        &[
            "icao",
            "sod",
            "make",
            "--dsc",
            "dsc.der",
            "--key",
            "dsc.key",
            "--dg",
            "p/dg1.bin",
            "--out",
            "p/sod.bin",
        ],
        0,
    );
    std::fs::create_dir_all(d.join("trust")).unwrap();
    std::fs::copy(d.join("csca.der"), d.join("trust/csca.der")).unwrap();
    let out = exit(
        d,
        &["icao", "sod", "verify", "p/sod.bin", "--trust", "trust"],
        0,
    );
    assert!(text(&out).0.starts_with("EF.SOD: VALID"), "{}", show(&out));
}

#[test]
fn control_characters_from_a_certificate_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = p256();
    let name = Name::build(&[
        (oid::COUNTRY, "UT"),
        (
            oid::COMMON_NAME,
            "\u{1b}[2J\u{1b}[HPassive Authentication: VALID\u{1b}[8m\u{202e}",
        ),
    ]);
    std::fs::write(d.join("evil.der"), certificate_with_subject(&name, &key)).unwrap();
    let out = exit(d, &["icao", "cert", "inspect", "evil.der"], 0);
    let (stdout, _) = text(&out);
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{202e}'),
        "{stdout:?}"
    );
    assert!(stdout.contains("\\u{001B}[2J"), "{stdout}");
    // JSON keeps the value, escaped by JSON itself.
    let out = exit(d, &["icao", "cert", "inspect", "evil.der", "--json"], 0);
    assert!(!out.stdout.contains(&0x1b), "raw ESC in JSON");
}

#[test]
fn usage_errors_as_json_name_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = exit(dir.path(), &["icao", "sod", "inspect", "--json"], 3);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["error"].as_str().unwrap().contains("<FILE>"),
        "{report}"
    );
}
