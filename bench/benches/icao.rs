//! SOD signing, Passive Authentication and master list verification, measured in-process.
//! `scripts/bench-icao.sh` runs these beside `openssl speed` and reports the ratios.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use marty_icao::algo::DigestAlgorithm;
use marty_icao::cert::Certificate;
use marty_icao::cms::SidChoice;
use marty_icao::issue::{self, Curve, KeyPair, KeySpec};
use marty_icao::masterlist::MasterList;
use marty_icao::pa;
use marty_icao::sod::{DataGroupHash, LdsSecurityObject};
use marty_icao::trust::TrustStore;
use time::macros::datetime;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(vectors().join(rel)).unwrap()
}

use marty_bench::{request, subject};

fn sod_signing(c: &mut Criterion) {
    let mut group = c.benchmark_group("sod_sign");
    for (name, spec) in [
        (
            "p256",
            KeySpec::Ec {
                curve: Curve::P256,
                explicit: false,
            },
        ),
        (
            "brainpoolP256r1",
            KeySpec::Ec {
                curve: Curve::BrainpoolP256r1,
                explicit: true,
            },
        ),
        ("rsa2048", KeySpec::Rsa { bits: 2048 }),
    ] {
        let csca_key = KeyPair::generate(spec).unwrap();
        let csca = issue::make_csca(&request("CSCA"), &csca_key).unwrap();
        let key = KeyPair::generate(spec).unwrap();
        let dsc = issue::make_dsc(
            &csca,
            &csca_key,
            &subject("CSCA"),
            &request("DS"),
            &key.spki,
            &["P"],
        )
        .unwrap();
        let lds = LdsSecurityObject {
            version: 0,
            hash_algorithm: DigestAlgorithm::Sha256,
            data_group_hashes: (1..=4)
                .map(|n| DataGroupHash {
                    number: n,
                    hash: DigestAlgorithm::Sha256.digest(&[n; 1000]),
                })
                .collect(),
            lds_version_info: None,
        };
        let signer = issue::SodSigner::new(dsc.clone(), key.clone()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| signer.sign(&lds, SidChoice::IssuerAndSerial, None).unwrap())
        });
    }
    group.finish();
}

fn passive_authentication(c: &mut Criterion) {
    let mut group = c.benchmark_group("pa");
    let at = datetime!(2026-01-15 00:00 UTC);
    for (country, csca) in [
        ("FR", "csca/CSCA_FR_5ba9a2069f.cer"),
        ("AT", "csca/CSCA_AT_a14e95ebf0.cer"),
        ("SG", "csca/CSCA_SG_aeed4994d8.cer"),
    ] {
        let store = TrustStore::new(vec![Certificate::from_der(&read(csca)).unwrap()], vec![]);
        let sod = read(&format!("sod/EF_SOD_{country}.bin"));
        let dg14 = read(&format!("dg/EF_DG14_{country}.bin"));
        let dgs = vec![(14u8, dg14)];
        assert_eq!(
            pa::passive_authentication(&sod, &dgs, &store, at, false).verdict,
            pa::Verdict::Valid
        );
        group.bench_function(country, |b| {
            b.iter(|| pa::passive_authentication(&sod, &dgs, &store, at, false))
        });
    }
    group.finish();
}

fn master_list(c: &mut Criterion) {
    let ml = read("masterlist/DE_ML_2026-05-28-08-28-45.ml");
    let store = TrustStore::new(
        vec![Certificate::from_der(&read("masterlist/DE_ROOT_CA_CSCA07.cer")).unwrap()],
        vec![],
    );
    let at = datetime!(2026-06-01 00:00 UTC);
    let mut group = c.benchmark_group("masterlist");
    group.sample_size(20);
    group.bench_function("de_parse_verify", |b| {
        b.iter(|| MasterList::parse(&ml).unwrap().verify(&store, at).valid)
    });
    group.finish();
}

criterion_group!(benches, sod_signing, passive_authentication, master_list);
criterion_main!(benches);
