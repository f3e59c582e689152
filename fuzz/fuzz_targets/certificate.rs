#![no_main]
//! X.509 parsing, classification and self-signature verification over arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = marty_icao::cert::Certificate::from_der(data) {
        let _ = cert.summary();
        let _ = cert.unknown_critical_extensions();
    }
    if let Ok(crl) = marty_icao::crl::Crl::from_der(data) {
        let _ = crl.summary();
    }
});
