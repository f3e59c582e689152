//! Hostile nesting: every structure a parser descends into is bounded by one depth limit
//! (`der::MAX_DEPTH`), whatever its type, and exceeding it is a typed error.
//!
//! Each input nests 20,000 levels deep (about 60-120 KB, the size of a real EF.SOD). Every
//! parse runs on a thread with a 512 KiB stack: parsing that recursed once per level of input
//! would overflow it and abort the whole test binary, which is how these tests fail.
//!
//! `MARTY_WRITE_FUZZ_SEEDS=DIR` also writes the inputs to `DIR/<fuzz target>/` (the seeds
//! committed under `fuzz/seeds/` were made that way).

#![allow(clippy::unwrap_used)]

use marty_icao::cert::Certificate;
use marty_icao::der::{self, DerError, MAX_DEPTH, Tag};
use marty_icao::masterlist::MasterList;
use marty_icao::pa::{self, CheckStatus, Verdict};
use marty_icao::sod::Sod;
use marty_icao::trust::TrustStore;
use marty_icao::{lds, oid};

const LEVELS: usize = 20_000;

/// Runs `f` on a thread with a small, known stack.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// `levels` constructed elements of identifier `tag` around `leaf`, definite lengths.
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

/// The same with indefinite lengths (BER).
fn nest_indefinite(tag: u8, levels: usize, leaf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(levels * 4 + leaf.len());
    for _ in 0..levels {
        out.extend([tag, 0x80]);
    }
    out.extend(leaf);
    for _ in 0..levels {
        out.extend([0, 0]);
    }
    out
}

fn seed(target: &str, name: &str, bytes: &[u8]) {
    if let Some(dir) = std::env::var_os("MARTY_WRITE_FUZZ_SEEDS") {
        let dir = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn is_too_deep(e: &DerError) -> bool {
    matches!(e, DerError::TooDeep { .. })
}

/// An EF.SOD whose SignedData is well formed around `econtent` (the eContent element).
fn sod_with_econtent(econtent: &[u8]) -> Vec<u8> {
    let eci = der::sequence(&[
        &der::Oid::known(oid::LDS_SECURITY_OBJECT).to_der(),
        &der::explicit(0, econtent),
    ]);
    signed_data_sod(&eci, &der::tlv(Tag::SET, &[]))
}

fn signed_data_sod(encap: &[u8], signer_infos: &[u8]) -> Vec<u8> {
    let sha256 = der::sequence(&[&der::Oid::known(oid::SHA256).to_der()]);
    let sd = der::sequence(&[
        &der::integer(3),
        &der::set_of(vec![sha256]),
        encap,
        signer_infos,
    ]);
    let ci = der::sequence(&[
        &der::Oid::known(oid::SIGNED_DATA).to_der(),
        &der::explicit(0, &sd),
    ]);
    der::tlv(Tag::application(23, true), &ci)
}

#[test]
fn constructed_octet_strings_in_a_sod_are_bounded() {
    // The reported input: eContent is 20,000 nested constructed OCTET STRINGs.
    let deep = nest(0x24, LEVELS, &der::octet_string(b"x"));
    let sod = sod_with_econtent(&deep);
    assert!(sod.len() > 60_000, "{}", sod.len());
    seed("sod", "deep-constructed-octet-string.bin", &sod);
    seed("tlv", "deep-constructed-octet-string.bin", &sod);
    let (err, report) = on_small_stack(move || {
        let err = Sod::parse(&sod).unwrap_err();
        let report = pa::passive_authentication(
            &sod,
            &[(1, vec![0x61, 0])],
            &TrustStore::default(),
            time::OffsetDateTime::now_utc(),
            false,
        );
        (err.to_string(), report)
    });
    assert!(
        err.contains(&format!("nesting deeper than {MAX_DEPTH} levels")),
        "{err}"
    );
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(report.checks[0].status, CheckStatus::Failed);
}

#[test]
fn indefinite_lengths_are_bounded() {
    let deep = nest_indefinite(0x24, LEVELS, &der::octet_string(b"x"));
    let sod = sod_with_econtent(&deep);
    seed("sod", "deep-indefinite-octet-string.bin", &sod);
    let err = on_small_stack(move || Sod::parse(&sod).unwrap_err().to_string());
    assert!(err.contains("nesting deeper"), "{err}");
    let seq = nest_indefinite(0x30, LEVELS, &[0x05, 0x00]);
    seed("tlv", "deep-indefinite-sequence.bin", &seq);
    let err = on_small_stack(move || der::parse(&seq).unwrap_err());
    assert!(is_too_deep(&err), "{err}");
}

#[test]
fn constructed_strings_of_every_type_are_bounded() {
    // UTF8String, PrintableString, BIT STRING and OCTET STRING segments, nested.
    for (tag, leaf) in [
        (0x2C_u8, der::utf8_string("x")),
        (0x33, der::printable_string("X")),
        (0x24, der::octet_string(b"x")),
    ] {
        let deep = nest(tag, LEVELS, &leaf);
        let (octets, text) = on_small_stack(move || {
            let t = der::parse(&deep).unwrap();
            (t.octets().map(|_| ()), t.text().map(|_| ()))
        });
        assert!(is_too_deep(&octets.unwrap_err()), "tag {tag:02X}");
        assert!(is_too_deep(&text.unwrap_err()), "tag {tag:02X}");
    }
    // A shallow constructed string still joins its segments.
    let ok = nest(0x24, 3, &der::octet_string(b"abc"));
    assert_eq!(&*der::parse(&ok).unwrap().octets().unwrap(), b"abc");
    // Segments of another type are refused (X.690 §8.23).
    let mixed = der::tlv(Tag::universal(4, true), &der::utf8_string("x"));
    assert!(matches!(
        der::parse(&mixed).unwrap().octets(),
        Err(DerError::UnexpectedTag { .. })
    ));
}

#[test]
fn nested_sequences_and_sets_are_bounded_for_every_reader() {
    for tag in [0x30_u8, 0x31, 0xA0] {
        let deep = nest(tag, LEVELS, &[0x05, 0x00]);
        seed("tlv", &format!("deep-{tag:02x}.bin"), &deep);
        let depth_reached = on_small_stack(move || {
            // Definite lengths parse lazily; descending is where the bound bites.
            let mut t = der::parse(&deep).unwrap();
            let mut depth = 0;
            loop {
                match t.children().next() {
                    Ok(Some(child)) => {
                        t = child;
                        depth += 1;
                    }
                    Ok(None) => panic!("ran out of nesting"),
                    Err(e) => {
                        assert!(is_too_deep(&e), "{e}");
                        return depth;
                    }
                }
            }
        });
        assert_eq!(depth_reached, MAX_DEPTH, "tag {tag:02X}");
    }
    // The generic structure dump of `marty icao` (LDS files).
    let deep = nest(0x30, LEVELS, &[0x05, 0x00]);
    seed("lds", "deep-sequence.bin", &deep);
    let err = on_small_stack(move || lds::describe(&deep).unwrap_err().to_string());
    assert!(err.contains("deep"), "{err}");
}

/// A real certificate with `from` (a DER element in it) replaced by `to`, lengths fixed up.
fn patched_certificate(from: &[u8], to: &[u8]) -> Vec<u8> {
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/csca/CSCA_FR_5ba9a2069f.cer"
    ))
    .unwrap();
    rebuild(&der::parse(&raw).unwrap(), from, to)
}

/// Re-encodes `t`, replacing the first element equal to `from` with `to`.
fn rebuild(t: &der::Tlv<'_>, from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return t.raw.to_vec();
    }
    if t.raw == from {
        return to.to_vec();
    }
    if !t.tag.constructed || !t.raw.windows(from.len()).any(|w| w == from) {
        return t.raw.to_vec();
    }
    let kids: Vec<Vec<u8>> = t
        .children()
        .collect_all()
        .unwrap()
        .iter()
        .map(|k| rebuild(k, from, to))
        .collect();
    der::tlv(t.tag, &kids.concat())
}

#[test]
fn names_and_extensions_with_hostile_nesting_do_not_crash_certificate_parsing() {
    let sample = Certificate::from_der(&patched_certificate(&[], &[])).unwrap();
    // A name whose attribute value is a 20,000-deep constructed UTF8String.
    let country_atv = sample
        .subject
        .raw
        .windows(5)
        .position(|w| w == [0x06, 0x03, 0x55, 0x04, 0x06])
        .unwrap();
    let value_start = country_atv + 5;
    let value_len = usize::from(sample.subject.raw[value_start + 1]) + 2;
    let value = sample.subject.raw[value_start..value_start + value_len].to_vec();
    let deep_value = nest(0x2C, LEVELS, &der::utf8_string("D"));
    let cert = patched_certificate(&value, &deep_value);
    seed("certificate", "deep-name-value.bin", &cert);
    let parsed =
        on_small_stack(move || Certificate::from_der(&cert).map(|c| c.subject.to_string()));
    // The value cannot be read as text and is shown as hex; the parse itself holds.
    assert!(parsed.is_ok(), "{parsed:?}");

    // An extension whose value nests 20,000 SEQUENCEs: a problem of that extension only.
    let ski = sample
        .extension(oid::SUBJECT_KEY_IDENTIFIER)
        .unwrap()
        .value
        .clone();
    let deep_ext = nest(0x30, LEVELS, &[0x05, 0x00]);
    let cert = patched_certificate(&der::octet_string(&ski), &der::octet_string(&deep_ext));
    seed("certificate", "deep-extension.bin", &cert);
    let problems = on_small_stack(move || Certificate::from_der(&cert).unwrap().extension_problems);
    assert!(!problems.is_empty());
}

#[test]
fn signed_attributes_and_master_lists_with_hostile_nesting_are_errors() {
    // A SignerInfo whose signed attribute value nests 20,000 SETs.
    let attr = der::sequence(&[
        &der::Oid::known(oid::MESSAGE_DIGEST).to_der(),
        &nest(0x31, LEVELS, &der::octet_string(&[0; 32])),
    ]);
    let si = der::sequence(&[
        &der::integer(1),
        &der::sequence(&[&der::sequence(&[]), &der::integer(1)]),
        &der::sequence(&[&der::Oid::known(oid::SHA256).to_der()]),
        &der::tlv(Tag::context(0), &attr),
        &der::sequence(&[&der::Oid::known(oid::ECDSA_WITH_SHA256).to_der()]),
        &der::octet_string(&[0; 64]),
    ]);
    let eci = der::sequence(&[
        &der::Oid::known(oid::LDS_SECURITY_OBJECT).to_der(),
        &der::explicit(0, &der::octet_string(&[0x30, 0x00])),
    ]);
    let sod = signed_data_sod(&eci, &der::set_of(vec![si]));
    seed("sod", "deep-signed-attribute.bin", &sod);
    let report = on_small_stack(move || {
        let _ = Sod::parse(&sod);
        pa::verify_sod(
            &sod,
            &TrustStore::default(),
            time::OffsetDateTime::now_utc(),
            false,
        )
    });
    assert_ne!(report.verdict, Verdict::Valid);

    // A master list whose eContent nests 20,000 constructed OCTET STRINGs.
    let eci = der::sequence(&[
        &der::Oid::known(oid::CSCA_MASTER_LIST).to_der(),
        &der::explicit(0, &nest(0x24, LEVELS, &der::octet_string(b"x"))),
    ]);
    let ml = signed_data_sod(&eci, &der::tlv(Tag::SET, &[]));
    // A master list is a bare ContentInfo, without EF.SOD's 0x77.
    let ml = der::parse(&ml).unwrap().value.to_vec();
    seed("masterlist", "deep-constructed-octet-string.bin", &ml);
    let err = on_small_stack(move || MasterList::parse(&ml).unwrap_err().to_string());
    assert!(err.contains("nesting deeper"), "{err}");
}
