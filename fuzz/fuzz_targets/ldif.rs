#![no_main]
//! LDIF (the ICAO PKD download) over arbitrary bytes: every entry, then its values.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for entry in marty_icao::ldif::entries(data) {
        match entry {
            Ok(e) => {
                let _ = e.values("userCertificate").count();
            }
            Err(_) => break,
        }
    }
});
