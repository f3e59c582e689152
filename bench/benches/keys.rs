//! EF.SOD signing with the key in the process (the envelope store, opened once) against the
//! same work with the key in a PKCS#11 token (SoftHSM2), in one run. `scripts/bench-keys.sh`
//! prepares the token, runs these in interleaved rounds and reports the ratio.
//!
//! Needs `SOFTHSM2_CONF` (the token's configuration), `MARTY_BENCH_PKCS11_TOKEN` and
//! `MARTY_BENCH_PKCS11_PIN`; without them only the envelope side runs.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use marty_config::Service;
use marty_icao::algo::DigestAlgorithm;
use marty_icao::cms::SidChoice;
use marty_icao::issue::{self, Curve, KeyPair, KeySpec};
use marty_icao::sod::{DataGroupHash, LdsSecurityObject};
use marty_keys::pkcs11::{Pkcs11Config, Pkcs11KeyStore};
use marty_keys::{EnvelopeKeyStore, Kek, KeyStore};
use uuid::Uuid;

use marty_bench::{request, subject};

fn token() -> Option<Pkcs11KeyStore> {
    let token = std::env::var("MARTY_BENCH_PKCS11_TOKEN").ok()?;
    let pin = std::env::var("MARTY_BENCH_PKCS11_PIN").ok()?;
    let module = std::env::var("MARTY_BENCH_PKCS11_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    Some(
        Pkcs11KeyStore::open(
            Service::DocumentSigner,
            &Pkcs11Config {
                module: module.into(),
                token,
                pin: pin.into(),
            },
        )
        .unwrap(),
    )
}

fn key_stores(c: &mut Criterion) {
    let envelope = EnvelopeKeyStore::new(
        Service::DocumentSigner,
        Kek::new(*b"bench key-encryption key 32 byte"),
        vec![],
    );
    let token = token();
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
    let mut group = c.benchmark_group("sod_sign_store");
    for (name, spec) in [
        (
            "p256",
            KeySpec::Ec {
                curve: Curve::P256,
                explicit: false,
            },
        ),
        ("rsa2048", KeySpec::Rsa { bits: 2048 }),
    ] {
        let csca_key = KeyPair::generate(spec).unwrap();
        let csca = issue::make_csca(&request("CSCA"), &csca_key).unwrap();
        let mut stores: Vec<(&str, &dyn KeyStore)> = vec![("envelope", &envelope)];
        if let Some(t) = &token {
            stores.push(("pkcs11", t));
        }
        for (store_name, store) in stores {
            // As the Document Signer does: generate once, open the stored key, sign many.
            let (_, sealed) = store.generate(Uuid::new_v4(), spec).unwrap();
            let key = store.open(&sealed).unwrap();
            let dsc = issue::make_dsc(
                &csca,
                &csca_key,
                &subject("CSCA"),
                &request("DS"),
                &key.spki,
                &["P"],
            )
            .unwrap();
            let signer = issue::SodSigner::new(dsc, key).unwrap();
            group.bench_function(format!("{store_name}_{name}"), |b| {
                b.iter(|| signer.sign(&lds, SidChoice::IssuerAndSerial, None).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, key_stores);
criterion_main!(benches);
