//! `marty pkd make-test-ldif`: a synthetic ICAO PKD download of the real one's shape, for
//! tests and the import benchmark.
//!
//! - a test root CSCA (country ZZ) and a Master List Signer under it; its certificate is
//!   written beside the file as `<out>.root.pem` (the `--root` of the import);
//! - CSCAs of the user-assigned ISO 3166 codes (AA, QM–QZ, XA–XZ), so they never collide with
//!   a real State's trust material, with keys of mixed families: RSA, RSASSA-PSS, NIST and
//!   brainpool curves, explicit EC parameters as Part 12 asks of CSCAs;
//! - one master list per synthetic country, each listing every synthetic CSCA (as the real
//!   download's lists repeat each other's certificates);
//! - the Document Signer certificates, spread over the CSCAs, and one CRL per CSCA revoking
//!   its first Document Signer;
//! - any real master list given with `--include-ml`, as it is.
//!
//! The work runs on every core; nothing here touches a service or a database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow};
use marty_icao::algo::{self, DigestAlgorithm};
use marty_icao::cert::Certificate;
use marty_icao::issue::{self, CertificateRequest, KeyPair, KeySpec, Period, Subject};
use marty_icao::ldif::write_entry;
use time::{Duration, OffsetDateTime};

use crate::icao::inputs::{refuse_existing, write_der};
use crate::operate::print_json;

/// ISO 3166 codes reserved for user assignment: never a real State's.
fn synthetic_countries() -> Vec<String> {
    let mut v = vec!["AA".to_owned()];
    v.extend((b'M'..=b'Z').map(|c| format!("Q{}", c as char)));
    v.extend((b'A'..=b'Z').map(|c| format!("X{}", c as char)));
    v
}

/// The CSCA key families, in turn.
const CSCA_KEYS: [&str; 7] = [
    "ec:P-256:explicit",
    "rsa:2048",
    "ec:brainpoolP256r1:explicit",
    "rsa-pss:2048",
    "ec:P-384:explicit",
    "ec:brainpoolP384r1:explicit",
    "rsa:3072",
];

const LDIF_BASE: &str = "dc=data,dc=download,dc=pkd,dc=icao,dc=int";

struct Authority {
    country: String,
    subject: Subject,
    cert: Certificate,
    key: KeyPair,
}

fn subject(country: &str, cn: String) -> Subject {
    Subject {
        country: country.to_owned(),
        // An MRZ code no State uses, so the alt name names this test country only.
        mrz_country: format!("{country}X"),
        organization: Some("Marty test PKD".into()),
        common_name: cn,
    }
}

fn request(subject: Subject, period: Period) -> CertificateRequest {
    CertificateRequest {
        subject,
        period,
        crl_distribution_point: "http://pkd.invalid/crl".into(),
        serial: None,
    }
}

fn period(now: OffsetDateTime, days: i64, usage_days: i64) -> Period {
    let start = now - Duration::days(30);
    Period {
        not_before: start,
        not_after: start + Duration::days(days),
        key_usage_not_before: start,
        key_usage_not_after: start + Duration::days(usage_days),
    }
}

fn csca(country: &str, n: usize, spec: &str, now: OffsetDateTime) -> Result<Authority> {
    let spec: KeySpec = spec.parse().map_err(|e: String| anyhow!(e))?;
    let key = KeyPair::generate(spec)?;
    let subject = subject(country, format!("CSCA {country} {n}"));
    let cert = issue::make_csca(&request(subject.clone(), period(now, 3650, 1095)), &key)?;
    Ok(Authority {
        country: country.to_owned(),
        subject,
        cert,
        key,
    })
}

/// `f(i)` for i in 0..n on every core, results in order.
fn on_all_cores<R: Send>(n: usize, f: impl Fn(usize) -> Result<R> + Sync) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<Vec<(usize, R)>> {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(out);
                        }
                        out.push((i, f(i)?));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow!("a generator thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut all: Vec<(usize, R)> = parts.drain(..).flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

/// `cn=…` of an LDIF DN: the characters RFC 4514 escapes, escaped.
fn rdn(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

#[derive(serde::Serialize)]
struct Summary {
    file: PathBuf,
    root: PathBuf,
    bytes: u64,
    cscas: usize,
    countries: usize,
    document_signers: usize,
    crls: usize,
    master_lists: usize,
    csca_keys: Vec<(String, usize)>,
    /// Signatures an import verifies, by the signing key's kind (the DSCs and CRLs by their
    /// CSCA's, each synthetic master list's CMS signature and signer certificate by the test
    /// root's); the included real lists are not counted.
    verifications: BTreeMap<String, usize>,
    seconds: f64,
}

pub fn make(
    dscs: u32,
    cscas: u32,
    include_ml: &[PathBuf],
    include_crl: &[PathBuf],
    out: &Path,
    force: bool,
    json: bool,
) -> Result<ExitCode> {
    let root_path = PathBuf::from(format!("{}.root.pem", out.display()));
    refuse_existing(out, force).map_err(crate::operate::InputError::from)?;
    refuse_existing(&root_path, force).map_err(crate::operate::InputError::from)?;
    let read_all = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| {
                let bytes =
                    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
                marty_icao::inputs::decode_pem(&bytes).map_err(|e| anyhow!("{}: {e}", p.display()))
            })
            .collect::<Result<Vec<_>>>()
            .map_err(crate::operate::InputError::from)
    };
    let included_crls = read_all(include_crl)?;
    let included = include_ml
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            marty_icao::inputs::decode_pem(&bytes).map_err(|e| anyhow!("{}: {e}", p.display()))
        })
        .collect::<Result<Vec<_>>>()
        .map_err(crate::operate::InputError::from)?;
    let started = std::time::Instant::now();
    let now = OffsetDateTime::now_utc();
    let countries = synthetic_countries();
    let cscas = cscas as usize;
    let dscs = dscs as usize;

    // The test root and its Master List Signer.
    let root = csca("ZZ", 1, "ec:P-256:named", now)?;
    let mls_key = KeyPair::generate(KeySpec::Ec {
        curve: "P-256".parse().map_err(|e: String| anyhow!(e))?,
        explicit: false,
    })?;
    let mls = issue::make_ml_signer(
        &root.cert,
        &root.key,
        &root.subject,
        &request(
            subject("ZZ", "Master List Signer ZZ".into()),
            period(now, 365, 120),
        ),
        &mls_key.spki,
    )?;

    eprintln!(
        "generating {cscas} CSCAs over {} countries",
        countries.len().min(cscas)
    );
    let authorities = on_all_cores(cscas, |i| {
        let country = &countries[i % countries.len()];
        csca(
            country,
            i / countries.len() + 1,
            CSCA_KEYS[i % CSCA_KEYS.len()],
            now,
        )
    })?;

    eprintln!("issuing {dscs} Document Signer certificates");
    let done = AtomicUsize::new(0);
    let dsc_certs = on_all_cores(dscs, |i| {
        let a = &authorities[i % authorities.len()];
        let key = KeyPair::generate(KeySpec::Ec {
            curve: "P-256".parse().map_err(|e: String| anyhow!(e))?,
            explicit: false,
        })?;
        let cert = issue::make_dsc(
            &a.cert,
            &a.key,
            &a.subject,
            &request(
                subject(&a.country, format!("Document Signer {} {i}", a.country)),
                period(now, 3650, 90),
            ),
            &key.spki,
            &["P"],
        )?;
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(5000) {
            eprintln!("  {n}/{dscs}");
        }
        Ok(cert)
    })?;

    eprintln!("signing {} CRLs", authorities.len());
    let crls = on_all_cores(authorities.len(), |i| {
        let a = &authorities[i];
        // Each CSCA revokes its first Document Signer (the one issued at index i).
        let revoked: Vec<(Vec<u8>, OffsetDateTime)> = dsc_certs
            .get(i)
            .map(|c| vec![(c.serial.clone(), now - Duration::days(1))])
            .unwrap_or_default();
        let alg =
            algo::default_signature_algorithm(&a.key.private, DigestAlgorithm::Sha256, a.key.pss);
        Ok(marty_icao::crl::build(
            &a.cert,
            &a.key.private,
            &alg,
            now - Duration::hours(1),
            now + Duration::days(30),
            1,
            &revoked,
        )?)
    })?;

    let csca_list: Vec<Certificate> = authorities.iter().map(|a| a.cert.clone()).collect();
    let list_countries: Vec<&String> = countries.iter().take(cscas).collect();
    eprintln!("signing {} master lists", list_countries.len());
    let lists = on_all_cores(list_countries.len(), |i| {
        // Signing times a second apart: each list a different file.
        let alg =
            algo::default_signature_algorithm(&mls_key.private, DigestAlgorithm::Sha256, false);
        Ok(marty_icao::masterlist::build(
            &csca_list,
            &mls,
            &root.cert,
            &mls_key.private,
            DigestAlgorithm::Sha256,
            alg,
            now - Duration::seconds(i as i64),
        )?)
    })?;

    let mut ldif = b"version: 1\n\n".to_vec();
    let ml_entry = |ldif: &mut Vec<u8>, country: &str, n: usize, der: &[u8]| {
        write_entry(
            ldif,
            &format!("cn=CN\\=Master List {country} {n},o=ml,c={country},{LDIF_BASE}"),
            &[
                ("objectClass", b"top"),
                ("objectClass", b"person"),
                ("objectClass", b"pkdMasterList"),
                ("objectClass", b"pkdDownload"),
                ("cn", format!("Master List {country} {n}").as_bytes()),
                ("sn", b"1"),
                ("pkdMasterListContent", der),
                ("pkdVersion", b"1"),
            ],
        );
    };
    for (i, der) in lists.iter().enumerate() {
        ml_entry(&mut ldif, list_countries[i], i + 1, der);
    }
    for (i, der) in included.iter().enumerate() {
        ml_entry(&mut ldif, "ZZ", lists.len() + i + 1, der);
    }
    for (i, c) in dsc_certs.iter().enumerate() {
        let country = c.subject.country().unwrap_or("ZZ");
        write_entry(
            &mut ldif,
            &format!(
                "cn={}+sn={},o=dsc,c={country},{LDIF_BASE}",
                rdn(&c.subject.to_string()),
                c.serial_hex()
            ),
            &[
                ("objectClass", b"top"),
                ("objectClass", b"inetOrgPerson"),
                ("objectClass", b"pkdDownload"),
                ("sn", c.serial_hex().as_bytes()),
                ("cn", rdn(&c.subject.to_string()).as_bytes()),
                ("userCertificate;binary", &c.raw),
                ("pkdVersion", format!("{}", i + 1).as_bytes()),
            ],
        );
    }
    for (a, der) in authorities.iter().zip(&crls) {
        write_entry(
            &mut ldif,
            &format!(
                "cn={},o=crl,c={},{LDIF_BASE}",
                rdn(&a.cert.subject.to_string()),
                a.country
            ),
            &[
                ("objectClass", b"top"),
                ("objectClass", b"cRLDistributionPoint"),
                ("objectClass", b"pkdDownload"),
                ("cn", rdn(&a.cert.subject.to_string()).as_bytes()),
                ("certificateRevocationList;binary", der),
            ],
        );
    }
    for (i, der) in included_crls.iter().enumerate() {
        let crl = marty_icao::crl::Crl::from_der(der).map_err(|e| {
            crate::operate::InputError::from(anyhow!("--include-crl {}: {e}", i + 1))
        })?;
        let country = crl.issuer.country().unwrap_or("ZZ").to_ascii_uppercase();
        write_entry(
            &mut ldif,
            &format!(
                "cn={},o=crl,c={country},{LDIF_BASE}",
                rdn(&crl.issuer.to_string())
            ),
            &[
                ("objectClass", b"top"),
                ("objectClass", b"cRLDistributionPoint"),
                ("objectClass", b"pkdDownload"),
                ("certificateRevocationList;binary", der),
            ],
        );
    }
    write_der(out, &ldif, force)?;
    write_der(
        &root_path,
        &marty_icao::inputs::encode_pem("CERTIFICATE", &root.cert.raw),
        force,
    )?;
    let mut keys: Vec<(String, usize)> = CSCA_KEYS
        .iter()
        .enumerate()
        .map(|(k, spec)| {
            (
                (*spec).to_owned(),
                (0..cscas).filter(|i| i % CSCA_KEYS.len() == k).count(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    keys.sort();
    let mut verifications: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..dscs {
        *verifications
            .entry(CSCA_KEYS[(i % cscas) % CSCA_KEYS.len()].to_owned())
            .or_default() += 1;
    }
    for i in 0..cscas {
        *verifications
            .entry(CSCA_KEYS[i % CSCA_KEYS.len()].to_owned())
            .or_default() += 1;
    }
    *verifications
        .entry("ec:P-256:named".to_owned())
        .or_default() += 2 * lists.len();
    let summary = Summary {
        file: out.to_path_buf(),
        root: root_path,
        bytes: ldif.len() as u64,
        cscas,
        countries: countries.len().min(cscas),
        document_signers: dscs,
        crls: crls.len() + included_crls.len(),
        master_lists: lists.len() + included.len(),
        csca_keys: keys,
        verifications,
        seconds: started.elapsed().as_secs_f64(),
    };
    if json {
        print_json(&summary)?;
    } else {
        println!(
            "{}: {:.1} MiB, {} master lists, {} CSCAs of {} countries, {} Document Signer certificates, {} CRLs ({:.1} s)",
            summary.file.display(),
            summary.bytes as f64 / 1048576.0,
            summary.master_lists,
            summary.cscas,
            summary.countries,
            summary.document_signers,
            summary.crls,
            summary.seconds
        );
        println!(
            "import it with: marty pkd import-ldif {} --root {}{}",
            summary.file.display(),
            summary.root.display(),
            if included.is_empty() {
                ""
            } else {
                " --root <the root of each included master list>"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
