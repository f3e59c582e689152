#![no_main]
//! EF.SOD parsing and signature verification over arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sod) = marty_icao::sod::Sod::parse(data) {
        for si in &sod.signed_data.signer_infos {
            let _ = sod.signed_data.verify_signer(si);
        }
        let _ = sod.lds.to_der();
    }
});
